// Module init: registers every native entry point. The addon keeps no per-process state,
// so it is context-aware and loads in several worker_threads at once.
//
// The boundary rule (docs/native-boundary.md): TypeScript owns semantic validation and the
// wording of messages; native code checks only what keeps memory safe (argument types, shapes a
// kernel indexes by, handle liveness) and converts libtorch errors into returned JS Errors
// (native/errors.h). An entry point with more than three arguments takes one named options
// object, read by name (native/options.h). Every entry point registered here is declared once,
// in the NativeBinding interface of lib/binding.ts (test/core/native-surface.test.ts checks both ways).
#include "handle.h"
#include "errors.h"
#include "dist.h"

#include <vector>

// node_version.h names the Node these headers belong to (buildInfo().nodeVersion). It also
// defines NAPI_VERSION as the runtime's own version, which must not leak into this module's
// declared Node-API version (NODE_API_MODULE below), hence push/pop.
#if defined(NAPI_EXPERIMENTAL) && __has_include(<node_version.h>)
#pragma push_macro("NAPI_VERSION")
#undef NAPI_VERSION
#include <node_version.h>
#pragma pop_macro("NAPI_VERSION")
#endif

namespace tl {
void RegisterTensor(Napi::Object exports);
void RegisterOps(Napi::Object exports);
void RegisterAutograd(Napi::Object exports);
void RegisterInit(Napi::Object exports);
void RegisterLora(Napi::Object exports);
void RegisterLoraMixed(Napi::Object exports);
void RegisterOptim(Napi::Object exports);
void RegisterNn(Napi::Object exports);
void RegisterNorm(Napi::Object exports);
void RegisterAttention(Napi::Object exports);
void RegisterActivation(Napi::Object exports);
void RegisterDist(Napi::Object exports);
void RegisterShapeOps(Napi::Object exports);
void RegisterIndexOps(Napi::Object exports);
void RegisterMathOps(Napi::Object exports);
void RegisterInPlaceOps(Napi::Object exports);
void TuneMalloc();
void RegisterLoraInit(Napi::Object exports);
void RegisterLoraCombine(Napi::Object exports);
void RegisterLoraDora(Napi::Object exports);
void RegisterFileRead(Napi::Object exports);
void RegisterLinearCrossEntropy(Napi::Object exports);

// Registrars of optional objects linked into an addon besides the shipped ones: native/bench.cc
// in torch_lora_bench.node adds itself from a static initializer, so the shipped addon, which
// does not link it, holds no reference to benchmark code.
static std::vector<void (*)(Napi::Object)>& ExtraRegistrars() {
  static std::vector<void (*)(Napi::Object)> registrars;
  return registrars;
}

bool AddExtraRegistrar(void (*registrar)(Napi::Object)) {
  ExtraRegistrars().push_back(registrar);
  return true;
}

namespace {

Napi::Value BuildInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  out.Set("builtWith", TORCH_LORA_BUILT_WITH);
  out.Set("torchVersion", TORCH_VERSION);
  out.Set("cudaAvailable", torch::cuda::is_available());
  out.Set("cudaDeviceCount", static_cast<double>(torch::cuda::device_count()));
  out.Set("cxx11Abi", static_cast<bool>(_GLIBCXX_USE_CXX11_ABI));
  out.Set("distBackends", DistBackends(env));  // c10d backends compiled in (prebuild manifests record them)
  // Which Node-API this file was compiled for: the prebuild script records it in the manifest,
  // and the loader only picks an experimental build on the Node it was built for.
#ifdef NAPI_EXPERIMENTAL
  out.Set("napiExperimental", true);
#if defined(NODE_MAJOR_VERSION)
  // The Node whose headers (and experimental symbols) it was compiled against.
  out.Set("nodeVersion",
          std::to_string(NODE_MAJOR_VERSION) + "." + std::to_string(NODE_MINOR_VERSION) + "." + std::to_string(NODE_PATCH_VERSION));
#endif
#else
  out.Set("napiExperimental", false);
#endif
  // 8 for a stable build; NAPI_VERSION_EXPERIMENTAL (2147483647) for an experimental one.
  out.Set("napiVersion", static_cast<double>(NAPI_VERSION));
  return out;
}

}  // namespace
}  // namespace tl

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) {
  using namespace tl;
  TuneMalloc();
  RegisterTensor(exports);
  RegisterOps(exports);
  RegisterAutograd(exports);
  RegisterInit(exports);
  RegisterLora(exports);
  RegisterLoraMixed(exports);
  RegisterOptim(exports);
  RegisterNn(exports);
  RegisterNorm(exports);
  RegisterAttention(exports);
  RegisterActivation(exports);
  RegisterDist(exports);
  RegisterShapeOps(exports);
  RegisterIndexOps(exports);
  RegisterMathOps(exports);
  RegisterInPlaceOps(exports);
  RegisterLoraInit(exports);
  RegisterLoraCombine(exports);
  RegisterLoraDora(exports);
  RegisterFileRead(exports);
  RegisterLinearCrossEntropy(exports);
  TL_EXPORT(exports, "buildInfo", BuildInfo);
  for (auto registrar : ExtraRegistrars()) registrar(exports);
  return exports;
}

NODE_API_MODULE(torch_lora, InitModule)
