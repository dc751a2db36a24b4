// torch::nn::init bindings: each calls libtorch's function of the same name, in place.
#include "handle.h"
#include "errors.h"
#include "options.h"

namespace tl {
namespace {

// The tensor to fill. Its dtype, rank and the numbers given are checked in lib/init.ts; what
// slips past (a direct call) is refused by libtorch, never read out of bounds.
at::Tensor& FillArg(const Napi::CallbackInfo& info) { return TensorArg(info, 0, "tensor"); }

torch::nn::init::FanModeType FanModeOption(const Napi::Object& o) {
  std::string mode = StringOption(o, "mode");
  if (mode == "fan_in") return torch::kFanIn;
  if (mode == "fan_out") return torch::kFanOut;
  ThrowTypeError(o.Env(), "mode: expected \"fan_in\" or \"fan_out\", got \"" + mode + "\"");
}

torch::nn::init::NonlinearityType NonlinearityOption(const Napi::Object& o) {
  std::string n = StringOption(o, "nonlinearity");
  if (n == "leaky_relu") return torch::kLeakyReLU;
  if (n == "relu") return torch::kReLU;
  if (n == "linear") return torch::kLinear;
  if (n == "tanh") return torch::kTanh;
  if (n == "sigmoid") return torch::kSigmoid;
  ThrowTypeError(o.Env(), "nonlinearity: expected leaky_relu, relu, linear, tanh or sigmoid, got \"" + n + "\"");
}

// PyTorch's Python init functions return a zero-element tensor untouched; libtorch's C++
// ones divide by a zero fan (orthogonal_ even raises SIGFPE), so the bindings return early.
bool NothingToFill(const at::Tensor& t) { return t.numel() == 0; }

Napi::Value Normal(const Napi::CallbackInfo& info) {
  at::Tensor& t = FillArg(info);
  double mean = NumberArg(info, 1, "mean"), std = NumberArg(info, 2, "std");
  torch::nn::init::normal_(t, mean, std);
  return info[0];
}

Napi::Value Uniform(const Napi::CallbackInfo& info) {
  at::Tensor& t = FillArg(info);
  double a = NumberArg(info, 1, "a"), b = NumberArg(info, 2, "b");
  torch::nn::init::uniform_(t, a, b);
  return info[0];
}

Napi::Value Constant(const Napi::CallbackInfo& info) {
  torch::nn::init::constant_(FillArg(info), NumberArg(info, 1, "value"));
  return info[0];
}

Napi::Value Zeros(const Napi::CallbackInfo& info) {
  torch::nn::init::zeros_(FillArg(info));
  return info[0];
}

Napi::Value Ones(const Napi::CallbackInfo& info) {
  torch::nn::init::ones_(FillArg(info));
  return info[0];
}

// The { a, mode, nonlinearity } options of the Kaiming initializers.
struct KaimingOptions {
  double a;
  torch::nn::init::FanModeType mode;
  torch::nn::init::NonlinearityType nonlinearity;
};

KaimingOptions KaimingOptionsArg(const Napi::CallbackInfo& info, size_t i) {
  Napi::Object o = OptionsArg(info, i);
  return {NumberOption(o, "a"), FanModeOption(o), NonlinearityOption(o)};
}

// initKaimingUniform(t, { a, mode, nonlinearity })
Napi::Value KaimingUniform(const Napi::CallbackInfo& info) {
  at::Tensor& t = FillArg(info);
  KaimingOptions k = KaimingOptionsArg(info, 1);
  if (!NothingToFill(t)) torch::nn::init::kaiming_uniform_(t, k.a, k.mode, k.nonlinearity);
  return info[0];
}

// initKaimingNormal(t, { a, mode, nonlinearity })
Napi::Value KaimingNormal(const Napi::CallbackInfo& info) {
  at::Tensor& t = FillArg(info);
  KaimingOptions k = KaimingOptionsArg(info, 1);
  if (!NothingToFill(t)) torch::nn::init::kaiming_normal_(t, k.a, k.mode, k.nonlinearity);
  return info[0];
}

Napi::Value XavierUniform(const Napi::CallbackInfo& info) {
  at::Tensor& t = FillArg(info);
  double gain = NumberArg(info, 1, "gain");
  if (!NothingToFill(t)) torch::nn::init::xavier_uniform_(t, gain);
  return info[0];
}

Napi::Value XavierNormal(const Napi::CallbackInfo& info) {
  at::Tensor& t = FillArg(info);
  double gain = NumberArg(info, 1, "gain");
  if (!NothingToFill(t)) torch::nn::init::xavier_normal_(t, gain);
  return info[0];
}

Napi::Value Orthogonal(const Napi::CallbackInfo& info) {
  at::Tensor& t = FillArg(info);
  double gain = NumberArg(info, 1, "gain");
  if (!NothingToFill(t)) torch::nn::init::orthogonal_(t, gain);
  return info[0];
}

Napi::Value ManualSeed(const Napi::CallbackInfo& info) {
  int64_t seed = IntArg(info, 0, "seed");  // lib/tensor.ts refuses a negative seed
  torch::manual_seed(static_cast<uint64_t>(seed));
  return info.Env().Undefined();
}

}  // namespace

void RegisterInit(Napi::Object exports) {
  TL_EXPORT(exports, "initNormal", Normal);
  TL_EXPORT(exports, "initUniform", Uniform);
  TL_EXPORT(exports, "initConstant", Constant);
  TL_EXPORT(exports, "initZeros", Zeros);
  TL_EXPORT(exports, "initOnes", Ones);
  TL_EXPORT(exports, "initKaimingUniform", KaimingUniform);
  TL_EXPORT(exports, "initKaimingNormal", KaimingNormal);
  TL_EXPORT(exports, "initXavierUniform", XavierUniform);
  TL_EXPORT(exports, "initXavierNormal", XavierNormal);
  TL_EXPORT(exports, "initOrthogonal", Orthogonal);
  TL_EXPORT(exports, "manualSeed", ManualSeed);
}

}  // namespace tl
