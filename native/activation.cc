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

}  // namespace

void RegisterActivation(Napi::Object exports) { TL_EXPORT(exports, "siluActivation", SiluActivation); }

}  // namespace tl
