// In-place ops: add_, mul_, copy_, zero_. Each returns its own first argument, and each is
// refused on a leaf that requires grad while grad mode is on, as PyTorch refuses it: autograd
// needs that leaf's value, and an in-place write would silently corrupt its gradients.
// Inside noGrad() they are allowed, which is how parameters are updated by hand.
//
// Argument rule (as in every ops_*.cc): at most three arguments, positional.
#include "handle.h"
#include "errors.h"
#include "scalar.h"

namespace tl {
namespace {

// The tensor written to. Autograd refuses to write a leaf that requires grad while grad mode is
// on before the kernel runs; lib/tensor.ts words that error.
at::Tensor& WritableArg(const Napi::CallbackInfo& info) { return TensorArg(info, 0, "self"); }

// add_(self, other | number, alpha): self += alpha * other
Napi::Value AddInPlace(const Napi::CallbackInfo& info) {
  at::Tensor& t = WritableArg(info);
  at::Scalar alpha = NumberScalar(info[2]);
  if (info[1].IsNumber())
    t.add_(NumberScalar(info[1]), alpha);
  else
    t.add_(TensorArg(info, 1, "other"), alpha);
  return info[0];
}

// mul_(self, other | number)
Napi::Value MulInPlace(const Napi::CallbackInfo& info) {
  at::Tensor& t = WritableArg(info);
  if (info[1].IsNumber())
    t.mul_(NumberScalar(info[1]));
  else
    t.mul_(TensorArg(info, 1, "other"));
  return info[0];
}

// copy_(self, src): recorded by autograd (unlike copyInto, which optimizers use under no-grad).
Napi::Value CopyInPlace(const Napi::CallbackInfo& info) {
  at::Tensor& t = WritableArg(info);
  t.copy_(TensorArg(info, 1, "src"));
  return info[0];
}

// zero_(self)
Napi::Value ZeroInPlace(const Napi::CallbackInfo& info) {
  WritableArg(info).zero_();
  return info[0];
}

}  // namespace

void RegisterInPlaceOps(Napi::Object exports) {
  TL_EXPORT(exports, "add_", AddInPlace);
  TL_EXPORT(exports, "mul_", MulInPlace);
  TL_EXPORT(exports, "copy_", CopyInPlace);
  TL_EXPORT(exports, "zero_", ZeroInPlace);
}

}  // namespace tl
