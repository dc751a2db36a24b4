// Activations of the nn modules that are not Tensor methods: one native call each.
#include "handle.h"
#include "errors.h"

namespace tl {
namespace {

// x · sigmoid(x), ATen's fused silu (forward and backward).
Napi::Value SiluActivation(const Napi::CallbackInfo& info) {
  // ATen refuses integer inputs; lib/nn/activation.ts words the error.
  at::Tensor& x = TensorArg(info, 0, "input");
  if (x.scalar_type() == at::kHalf && x.device().is_cpu()) return WrapTensor(info.Env(), at::silu(x.to(at::kFloat)).to(at::kHalf));
  return WrapTensor(info.Env(), at::silu(x));
}

// geluActivation(x, approximate): ATen's fused GELU, "none" (erf) or "tanh" (GPT-2's gelu_new,
// 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))) in one kernel instead of eight elementwise ops.
Napi::Value GeluActivation(const Napi::CallbackInfo& info) {
  at::Tensor& x = TensorArg(info, 0, "input");
  const std::string approximate = StringArg(info, 1, "approximate");
  if (approximate != "none" && approximate != "tanh")
    ThrowRangeError(info.Env(), "approximate: expected \"none\" or \"tanh\", got \"" + approximate + "\"");
  if (!x.is_floating_point())
    ThrowTypeError(info.Env(), std::string("GELU: input: expected a floating-point tensor, got ") + DtypeName(x.scalar_type()));
  if (x.scalar_type() == at::kHalf && x.device().is_cpu())
    return WrapTensor(info.Env(), at::gelu(x.to(at::kFloat), approximate).to(at::kHalf));
  return WrapTensor(info.Env(), at::gelu(x, approximate));
}

}  // namespace

void RegisterActivation(Napi::Object exports) {
  TL_EXPORT(exports, "siluActivation", SiluActivation);
  TL_EXPORT(exports, "geluActivation", GeluActivation);
}

}  // namespace tl
