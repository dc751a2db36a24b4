// Activations of the nn modules that are not Tensor methods: one native call each.
#include "handle.h"
#include "errors.h"

namespace tl {
namespace {

// x · sigmoid(x), ATen's fused silu (forward and backward).
Napi::Value SiluActivation(const Napi::CallbackInfo& info) {
  at::Tensor& x = TensorArg(info, 0, "input");
  if (!x.is_floating_point())
    ThrowTypeError(info.Env(), std::string("SiLU: input: expected a floating-point tensor, got ") + DtypeName(x.scalar_type()));
  if (x.scalar_type() == at::kHalf && x.device().is_cpu()) return WrapTensor(info.Env(), at::silu(x.to(at::kFloat)).to(at::kHalf));
  return WrapTensor(info.Env(), at::silu(x));
}

}  // namespace

void RegisterActivation(Napi::Object exports) { TL_EXPORT(exports, "siluActivation", SiluActivation); }

}  // namespace tl
