// torch::nn::init bindings: each calls libtorch's function of the same name, in place.
#include "handle.h"
#include "errors.h"
#include "options.h"

namespace tl {
namespace {

at::Tensor& FloatingArg(const Napi::CallbackInfo& info) {
  at::Tensor& t = TensorArg(info, 0, "tensor");
  if (!at::isFloatingType(t.scalar_type())) {
    ThrowTypeError(info.Env(), std::string("tensor: init functions need a floating-point tensor, got ") + DtypeName(t.scalar_type()));
  }
  return t;
}

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

void CheckFanDims(const Napi::CallbackInfo& info, const at::Tensor& t, const char* fn) {
  if (t.dim() < 2) {
    ThrowRangeError(info.Env(), std::string(fn) +
                                    ": fan in and fan out cannot be computed for a tensor with fewer than 2 dimensions (got " +
                                    std::to_string(t.dim()) + ")");
  }
}

double FiniteArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  double v = NumberArg(info, i, name);
  if (!std::isfinite(v)) ThrowRangeError(info.Env(), std::string(name) + ": expected a finite number, got " + Describe(info[i]));
  return v;
}

Napi::Value Normal(const Napi::CallbackInfo& info) {
  at::Tensor& t = FloatingArg(info);
  double mean = FiniteArg(info, 1, "mean"), std = FiniteArg(info, 2, "std");
  if (std < 0) ThrowRangeError(info.Env(), "std: must be >= 0, got " + Describe(info[2]));
  torch::nn::init::normal_(t, mean, std);
  return info[0];
}

Napi::Value Uniform(const Napi::CallbackInfo& info) {
  at::Tensor& t = FloatingArg(info);
  double a = FiniteArg(info, 1, "a"), b = FiniteArg(info, 2, "b");
  if (a > b) ThrowRangeError(info.Env(), "uniform_: a must be <= b, got a=" + Describe(info[1]) + " b=" + Describe(info[2]));
  torch::nn::init::uniform_(t, a, b);
  return info[0];
}

Napi::Value Constant(const Napi::CallbackInfo& info) {
  torch::nn::init::constant_(FloatingArg(info), NumberArg(info, 1, "value"));
  return info[0];
}

Napi::Value Zeros(const Napi::CallbackInfo& info) {
  torch::nn::init::zeros_(FloatingArg(info));
  return info[0];
}

Napi::Value Ones(const Napi::CallbackInfo& info) {
  torch::nn::init::ones_(FloatingArg(info));
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
  double a = NumberOption(o, "a");
  if (!std::isfinite(a)) ThrowRangeError(info.Env(), "a: expected a finite number, got " + Describe(o.Get("a")));
  return {a, FanModeOption(o), NonlinearityOption(o)};
}

// initKaimingUniform(t, { a, mode, nonlinearity })
Napi::Value KaimingUniform(const Napi::CallbackInfo& info) {
  at::Tensor& t = FloatingArg(info);
  CheckFanDims(info, t, "kaiming_uniform_");
  KaimingOptions k = KaimingOptionsArg(info, 1);
  if (!NothingToFill(t)) torch::nn::init::kaiming_uniform_(t, k.a, k.mode, k.nonlinearity);
  return info[0];
}

// initKaimingNormal(t, { a, mode, nonlinearity })
Napi::Value KaimingNormal(const Napi::CallbackInfo& info) {
  at::Tensor& t = FloatingArg(info);
  CheckFanDims(info, t, "kaiming_normal_");
  KaimingOptions k = KaimingOptionsArg(info, 1);
  if (!NothingToFill(t)) torch::nn::init::kaiming_normal_(t, k.a, k.mode, k.nonlinearity);
  return info[0];
}

Napi::Value XavierUniform(const Napi::CallbackInfo& info) {
  at::Tensor& t = FloatingArg(info);
  CheckFanDims(info, t, "xavier_uniform_");
  double gain = FiniteArg(info, 1, "gain");
  if (!NothingToFill(t)) torch::nn::init::xavier_uniform_(t, gain);
  return info[0];
}

Napi::Value XavierNormal(const Napi::CallbackInfo& info) {
  at::Tensor& t = FloatingArg(info);
  CheckFanDims(info, t, "xavier_normal_");
  double gain = FiniteArg(info, 1, "gain");
  if (!NothingToFill(t)) torch::nn::init::xavier_normal_(t, gain);
  return info[0];
}

Napi::Value Orthogonal(const Napi::CallbackInfo& info) {
  at::Tensor& t = FloatingArg(info);
  CheckFanDims(info, t, "orthogonal_");
  double gain = FiniteArg(info, 1, "gain");
  if (!NothingToFill(t)) torch::nn::init::orthogonal_(t, gain);
  return info[0];
}

Napi::Value ManualSeed(const Napi::CallbackInfo& info) {
  int64_t seed = IntArg(info, 0, "seed");
  if (seed < 0) ThrowRangeError(info.Env(), "seed: expected a non-negative integer, got " + Describe(info[0]));
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
