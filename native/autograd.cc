// Autograd: requires_grad, .grad, backward and the grad-mode switch behind noGrad().
#include "handle.h"
#include "errors.h"

namespace tl {
namespace {

Napi::Value SetRequiresGrad(const Napi::CallbackInfo& info) {
  at::Tensor& t = TensorArg(info, 0, "tensor");
  bool flag = BoolArg(info, 1, "requiresGrad");
  if (flag && !at::isFloatingType(t.scalar_type())) {
    ThrowTypeError(info.Env(), std::string("requiresGrad: only floating-point tensors can require gradients, this one is ") +
                                   DtypeName(t.scalar_type()));
  }
  if (!t.is_leaf() && !flag) {
    ThrowError(info.Env(), "requiresGrad: cannot turn off gradients of a non-leaf tensor; use detach()");
  }
  t.set_requires_grad(flag);
  return info.Env().Undefined();
}

Napi::Value Grad(const Napi::CallbackInfo& info) {
  const at::Tensor& g = TensorArg(info, 0, "tensor").grad();
  return g.defined() ? WrapTensor(info.Env(), g) : info.Env().Null();
}

Napi::Value ClearGrad(const Napi::CallbackInfo& info) {
  TensorArg(info, 0, "tensor").mutable_grad() = at::Tensor();
  return info.Env().Undefined();
}

// backward(t, gradient | null, retainGraph)
Napi::Value Backward(const Napi::CallbackInfo& info) {
  at::Tensor& t = TensorArg(info, 0, "tensor");
  at::Tensor gradient = OptionalTensorArg(info, 1, "gradient");
  if (!t.requires_grad()) {
    ThrowError(info.Env(),
               "backward(): the tensor does not require grad and has no grad_fn "
               "(was it computed inside noGrad(), or from tensors that do not require grad?)");
  }
  if (!gradient.defined() && t.numel() != 1) {
    ThrowError(info.Env(), "backward(): a gradient is needed for a tensor of " + std::to_string(t.numel()) +
                               " elements (only scalar outputs get an implicit gradient of 1)");
  }
  bool retain = info.Length() > 2 && BoolArg(info, 2, "retainGraph");
  t.backward(gradient, retain);
  return info.Env().Undefined();
}

// setGradEnabled(flag) -> previous flag
Napi::Value SetGradEnabled(const Napi::CallbackInfo& info) {
  bool previous = at::GradMode::is_enabled();
  at::GradMode::set_enabled(BoolArg(info, 0, "enabled"));
  return Napi::Boolean::New(info.Env(), previous);
}

Napi::Value IsGradEnabled(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), at::GradMode::is_enabled()); }

}  // namespace

void RegisterAutograd(Napi::Object exports) {
  TL_EXPORT(exports, "setRequiresGrad", SetRequiresGrad);
  TL_EXPORT(exports, "grad", Grad);
  TL_EXPORT(exports, "clearGrad", ClearGrad);
  TL_EXPORT(exports, "backward", Backward);
  TL_EXPORT(exports, "setGradEnabled", SetGradEnabled);
  TL_EXPORT(exports, "isGradEnabled", IsGradEnabled);
}

}  // namespace tl
