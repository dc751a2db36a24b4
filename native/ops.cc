// The tensor operations a small model and its loss need, each a thin call into ATen.
#include "handle.h"
#include "errors.h"
#include "scalar.h"
#include "options.h"

namespace tl {
namespace {

#define TL_UNARY(Name, expr)                         \
  Napi::Value Name(const Napi::CallbackInfo& info) { \
    at::Tensor& x = TensorArg(info, 0, "tensor");    \
    return WrapTensor(info.Env(), (expr));           \
  }

TL_UNARY(Neg, x.neg())
TL_UNARY(Relu, x.relu())
TL_UNARY(Gelu, at::gelu(x))
TL_UNARY(Tanh, x.tanh())
TL_UNARY(Sigmoid, x.sigmoid())
TL_UNARY(Exp, x.exp())
TL_UNARY(Log, x.log())
TL_UNARY(Sqrt, x.sqrt())
TL_UNARY(Rsqrt, x.rsqrt())
TL_UNARY(Sin, x.sin())
TL_UNARY(Cos, x.cos())
TL_UNARY(Silu, at::silu(x))
TL_UNARY(Abs, x.abs())
TL_UNARY(Clone, x.clone())
TL_UNARY(Detach, x.detach())
TL_UNARY(Contiguous, x.contiguous())
TL_UNARY(T, x.t())
TL_UNARY(IsFinite, at::isfinite(x))
TL_UNARY(AllFinite, at::isfinite(x).all())

// Binary ops take a Tensor or a number as the second operand.
#define TL_BINARY(Name, op)                                                                  \
  Napi::Value Name(const Napi::CallbackInfo& info) {                                         \
    at::Tensor& a = TensorArg(info, 0, "self");                                              \
    if (info[1].IsNumber()) return WrapTensor(info.Env(), at::op(a, NumberScalar(info[1]))); \
    return WrapTensor(info.Env(), at::op(a, TensorArg(info, 1, "other")));                   \
  }

TL_BINARY(Add, add)
TL_BINARY(Sub, sub)
TL_BINARY(Mul, mul)
TL_BINARY(Div, div)
TL_BINARY(Pow, pow)
TL_BINARY(Eq, eq)
TL_BINARY(Gt, gt)
TL_BINARY(Lt, lt)
TL_BINARY(Ne, ne)
TL_BINARY(Ge, ge)
TL_BINARY(Le, le)

// maximum(t, other | number): elementwise max; with a number, a clamp from below.
Napi::Value Maximum(const Napi::CallbackInfo& info) {
  at::Tensor& a = TensorArg(info, 0, "self");
  if (info[1].IsNumber()) return WrapTensor(info.Env(), a.clamp_min(NumberScalar(info[1])));
  return WrapTensor(info.Env(), at::maximum(a, TensorArg(info, 1, "other")));
}

// minimum(t, other | number): elementwise min; with a number, a clamp from above.
Napi::Value Minimum(const Napi::CallbackInfo& info) {
  at::Tensor& a = TensorArg(info, 0, "self");
  if (info[1].IsNumber()) return WrapTensor(info.Env(), a.clamp_max(NumberScalar(info[1])));
  return WrapTensor(info.Env(), at::minimum(a, TensorArg(info, 1, "other")));
}

// bmm(a (b, n, m), b (b, m, p)): lib/tensor.ts checks the ranks and sizes and words the errors.
Napi::Value Bmm(const Napi::CallbackInfo& info) {
  return WrapTensor(info.Env(), at::bmm(TensorArg(info, 0, "self"), TensorArg(info, 1, "other")));
}

Napi::Value Matmul(const Napi::CallbackInfo& info) {
  at::Tensor& a = TensorArg(info, 0, "self");
  at::Tensor& b = TensorArg(info, 1, "other");
  // ATen refuses mixed dtypes; lib/op-errors.ts's matmulRule words the error.
  return WrapTensor(info.Env(), at::matmul(a, b));
}

Napi::Value Transpose(const Napi::CallbackInfo& info) {
  return WrapTensor(info.Env(), TensorArg(info, 0, "tensor").transpose(IntArg(info, 1, "dim0"), IntArg(info, 2, "dim1")));
}

Napi::Value Reshape(const Napi::CallbackInfo& info) {
  return WrapTensor(info.Env(), TensorArg(info, 0, "tensor").reshape(IntListArg(info, 1, "shape")));
}

Napi::Value View(const Napi::CallbackInfo& info) {
  return WrapTensor(info.Env(), TensorArg(info, 0, "tensor").view(IntListArg(info, 1, "shape")));
}

Napi::Value IndexSelect(const Napi::CallbackInfo& info) {
  return WrapTensor(info.Env(), TensorArg(info, 0, "tensor").index_select(IntArg(info, 1, "dim"), TensorArg(info, 2, "index")));
}

// narrow(t, { dim, start, length })
Napi::Value Narrow(const Napi::CallbackInfo& info) {
  at::Tensor& t = TensorArg(info, 0, "tensor");
  Napi::Object o = OptionsArg(info, 1);
  return WrapTensor(info.Env(), t.narrow(IntOption(o, "dim"), IntOption(o, "start"), IntOption(o, "length")));
}

Napi::Value Cat(const Napi::CallbackInfo& info) {
  std::vector<at::Tensor> parts = TensorListArg(info, 0, "tensors");
  return WrapTensor(info.Env(), at::cat(parts, IntArg(info, 1, "dim")));
}

// Reductions: (t, dims | null, keepdim)
#define TL_REDUCE(Name, fn)                                                                                            \
  Napi::Value Name(const Napi::CallbackInfo& info) {                                                                   \
    at::Tensor& x = TensorArg(info, 0, "tensor");                                                                      \
    if (info[1].IsNull() || info[1].IsUndefined()) return WrapTensor(info.Env(), x.fn());                              \
    return WrapTensor(info.Env(), x.fn(IntListArg(info, 1, "dim"), info.Length() > 2 && BoolArg(info, 2, "keepdim"))); \
  }

TL_REDUCE(Sum, sum)
TL_REDUCE(Mean, mean)

// max(t, dim | null, keepdim) -> values; argmax likewise.
Napi::Value Max(const Napi::CallbackInfo& info) {
  at::Tensor& x = TensorArg(info, 0, "tensor");
  if (info[1].IsNull() || info[1].IsUndefined()) return WrapTensor(info.Env(), x.max());
  return WrapTensor(info.Env(), std::get<0>(x.max(IntArg(info, 1, "dim"), BoolArg(info, 2, "keepdim"))));
}

Napi::Value Argmax(const Napi::CallbackInfo& info) {
  at::Tensor& x = TensorArg(info, 0, "tensor");
  if (info[1].IsNull() || info[1].IsUndefined()) return WrapTensor(info.Env(), x.argmax());
  return WrapTensor(info.Env(), x.argmax(IntArg(info, 1, "dim"), BoolArg(info, 2, "keepdim")));
}

Napi::Value Softmax(const Napi::CallbackInfo& info) {
  return WrapTensor(info.Env(), TensorArg(info, 0, "tensor").softmax(IntArg(info, 1, "dim")));
}

Napi::Value LogSoftmax(const Napi::CallbackInfo& info) {
  return WrapTensor(info.Env(), TensorArg(info, 0, "tensor").log_softmax(IntArg(info, 1, "dim")));
}

Napi::Value Dropout(const Napi::CallbackInfo& info) {
  double p = NumberArg(info, 1, "p");
  return WrapTensor(info.Env(), at::dropout(TensorArg(info, 0, "tensor"), p, BoolArg(info, 2, "train")));
}

at::Reduction::Reduction ParseReduction(Napi::Env env, const std::string& r) {
  if (r == "mean") return at::Reduction::Mean;
  if (r == "sum") return at::Reduction::Sum;
  if (r == "none") return at::Reduction::None;
  ThrowTypeError(env, "reduction: expected \"mean\", \"sum\" or \"none\", got \"" + r + "\"");
}

at::Reduction::Reduction ReductionArg(const Napi::CallbackInfo& info, size_t i) {
  return ParseReduction(info.Env(), StringArg(info, i, "reduction"));
}

// crossEntropy({ input (N, C), target int64 (N), reduction, ignoreIndex, labelSmoothing }): the
// target dtype and the smoothing range are checked in lib/functional.ts (ATen lets a NaN
// smoothing through, which gives a NaN loss but reads nothing out of bounds).
Napi::Value CrossEntropy(const Napi::CallbackInfo& info) {
  Napi::Object o = OptionsArg(info, 0);
  at::Tensor& logits = TensorOption(o, "input");
  at::Tensor& target = TensorOption(o, "target");
  double smoothing = NumberOption(o, "labelSmoothing");
  at::Reduction::Reduction reduction = ParseReduction(info.Env(), StringOption(o, "reduction"));
  int64_t ignoreIndex = IntOption(o, "ignoreIndex");
  return WrapTensor(info.Env(), at::cross_entropy_loss(logits, target, {}, reduction, ignoreIndex, smoothing));
}

Napi::Value MseLoss(const Napi::CallbackInfo& info) {
  at::Tensor& input = TensorArg(info, 0, "input");
  at::Tensor& target = TensorArg(info, 1, "target");
  // ATen broadcasts unequal shapes; lib/functional.ts refuses them before the call.
  return WrapTensor(info.Env(), at::mse_loss(input, target, ReductionArg(info, 2)));
}

// allclose(self, other, { rtol, atol })
Napi::Value Allclose(const Napi::CallbackInfo& info) {
  at::Tensor& self = TensorArg(info, 0, "self");
  at::Tensor& other = TensorArg(info, 1, "other");
  Napi::Object o = OptionsArg(info, 2);
  double rtol = NumberOption(o, "rtol"), atol = NumberOption(o, "atol");
  return Napi::Boolean::New(info.Env(), at::allclose(self, other, rtol, atol));
}

Napi::Value Equal(const Napi::CallbackInfo& info) {
  at::Tensor& a = TensorArg(info, 0, "self");
  at::Tensor& b = TensorArg(info, 1, "other");
  // at::equal demands equal dtypes and devices; "not equal" is the useful answer otherwise.
  if (a.scalar_type() != b.scalar_type() || a.device() != b.device() || !a.sizes().equals(b.sizes())) {
    return Napi::Boolean::New(info.Env(), false);
  }
  return Napi::Boolean::New(info.Env(), at::equal(a, b));
}

// In-place ops used by optimizers and merges; the tensor is returned for chaining.
Napi::Value CopyInto(const Napi::CallbackInfo& info) {
  at::Tensor& dst = TensorArg(info, 0, "self");
  at::NoGradGuard noGrad;
  dst.copy_(TensorArg(info, 1, "src"));
  return info[0];
}

}  // namespace

void RegisterOps(Napi::Object exports) {
  TL_EXPORT(exports, "neg", Neg);
  TL_EXPORT(exports, "relu", Relu);
  TL_EXPORT(exports, "gelu", Gelu);
  TL_EXPORT(exports, "tanh", Tanh);
  TL_EXPORT(exports, "sigmoid", Sigmoid);
  TL_EXPORT(exports, "exp", Exp);
  TL_EXPORT(exports, "log", Log);
  TL_EXPORT(exports, "sqrt", Sqrt);
  TL_EXPORT(exports, "abs", Abs);
  TL_EXPORT(exports, "rsqrt", Rsqrt);
  TL_EXPORT(exports, "sin", Sin);
  TL_EXPORT(exports, "cos", Cos);
  TL_EXPORT(exports, "silu", Silu);
  TL_EXPORT(exports, "clone", Clone);
  TL_EXPORT(exports, "detach", Detach);
  TL_EXPORT(exports, "contiguous", Contiguous);
  TL_EXPORT(exports, "t", T);
  TL_EXPORT(exports, "isfinite", IsFinite);
  TL_EXPORT(exports, "allFinite", AllFinite);
  TL_EXPORT(exports, "add", Add);
  TL_EXPORT(exports, "sub", Sub);
  TL_EXPORT(exports, "mul", Mul);
  TL_EXPORT(exports, "div", Div);
  TL_EXPORT(exports, "pow", Pow);
  TL_EXPORT(exports, "eq", Eq);
  TL_EXPORT(exports, "gt", Gt);
  TL_EXPORT(exports, "lt", Lt);
  TL_EXPORT(exports, "ne", Ne);
  TL_EXPORT(exports, "ge", Ge);
  TL_EXPORT(exports, "le", Le);
  TL_EXPORT(exports, "minimum", Minimum);
  TL_EXPORT(exports, "bmm", Bmm);
  TL_EXPORT(exports, "maximum", Maximum);
  TL_EXPORT(exports, "matmul", Matmul);
  TL_EXPORT(exports, "transpose", Transpose);
  TL_EXPORT(exports, "reshape", Reshape);
  TL_EXPORT(exports, "view", View);
  TL_EXPORT(exports, "indexSelect", IndexSelect);
  TL_EXPORT(exports, "narrow", Narrow);
  TL_EXPORT(exports, "cat", Cat);
  TL_EXPORT(exports, "sum", Sum);
  TL_EXPORT(exports, "mean", Mean);
  TL_EXPORT(exports, "max", Max);
  TL_EXPORT(exports, "argmax", Argmax);
  TL_EXPORT(exports, "softmax", Softmax);
  TL_EXPORT(exports, "logSoftmax", LogSoftmax);
  TL_EXPORT(exports, "dropout", Dropout);
  TL_EXPORT(exports, "crossEntropy", CrossEntropy);
  TL_EXPORT(exports, "mseLoss", MseLoss);
  TL_EXPORT(exports, "allclose", Allclose);
  TL_EXPORT(exports, "equal", Equal);
  TL_EXPORT(exports, "copyInto", CopyInto);
}

}  // namespace tl
