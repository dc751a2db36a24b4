// Module init: registers every native entry point. The addon keeps no per-process state,
// so it is context-aware and loads in several worker_threads at once.
#include "handle.h"
#include "errors.h"

namespace tl {
void RegisterTensor(Napi::Object exports);
void RegisterOps(Napi::Object exports);
void RegisterAutograd(Napi::Object exports);
void RegisterInit(Napi::Object exports);
void RegisterLora(Napi::Object exports);
void RegisterOptim(Napi::Object exports);
void RegisterNn(Napi::Object exports);
void RegisterBench(Napi::Object exports);

namespace {

Napi::Value BuildInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  out.Set("builtWith", TORCH_LORA_BUILT_WITH);
  out.Set("torchVersion", TORCH_VERSION);
  out.Set("cudaAvailable", torch::cuda::is_available());
  out.Set("cudaDeviceCount", static_cast<double>(torch::cuda::device_count()));
  out.Set("cxx11Abi", static_cast<bool>(_GLIBCXX_USE_CXX11_ABI));
  return out;
}

}  // namespace
}  // namespace tl

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) {
  using namespace tl;
  RegisterTensor(exports);
  RegisterOps(exports);
  RegisterAutograd(exports);
  RegisterInit(exports);
  RegisterLora(exports);
  RegisterOptim(exports);
  RegisterNn(exports);
  RegisterBench(exports);
  TL_EXPORT(exports, "buildInfo", BuildInfo);
  return exports;
}

NODE_API_MODULE(torch_lora, InitModule)
