// Numeric ops beyond the elementwise basics of ops.cc: clamp, var, std, logsumexp, cumsum.
//
// Argument rule (as in every ops_*.cc): an entry point with at most three arguments takes them
// positionally, which keeps small calls cheap; one with more takes the tensor and ONE named
// options object (var, std). lib/tensor.ts checks meaning and words the errors.
#include "handle.h"
#include "errors.h"
#include "options.h"
#include "scalar.h"

namespace tl {
namespace {

c10::optional<at::Scalar> OptionalScalar(const Napi::Value& v) {
  if (v.IsNull() || v.IsUndefined()) return c10::nullopt;
  return NumberScalar(v);
}

// clamp(t, min | null, max | null): numbers, or tensors broadcast against t.
Napi::Value Clamp(const Napi::CallbackInfo& info) {
  at::Tensor& t = TensorArg(info, 0, "tensor");
  const bool tensorBounds = info[1].IsExternal() || info[2].IsExternal();
  if (!tensorBounds) return WrapTensor(info.Env(), t.clamp(OptionalScalar(info[1]), OptionalScalar(info[2])));
  c10::optional<at::Tensor> lo, hi;
  if (!info[1].IsNull() && !info[1].IsUndefined()) lo = TensorArg(info, 1, "min");
  if (!info[2].IsNull() && !info[2].IsUndefined()) hi = TensorArg(info, 2, "max");
  return WrapTensor(info.Env(), t.clamp(lo, hi));
}

// The correction argument's type changed from int64 to Scalar in PyTorch 2.
#if TORCH_VERSION_MAJOR >= 2
using Correction = c10::optional<at::Scalar>;
#else
using Correction = c10::optional<int64_t>;
#endif

// var(t, { dim: number[] | null, correction, keepdim }) and std(...) alike.
template <bool IsStd>
Napi::Value Dispersion(const Napi::CallbackInfo& info) {
  at::Tensor& t = TensorArg(info, 0, "tensor");
  Napi::Object o = OptionsArg(info, 1);
  c10::optional<std::vector<int64_t>> dims = OptionalIntListOption(o, "dim");
  at::OptionalIntArrayRef dimRef = dims ? at::OptionalIntArrayRef(*dims) : c10::nullopt;
  Correction correction = IntOption(o, "correction");
  const bool keepdim = BoolOption(o, "keepdim", false);
  return WrapTensor(info.Env(), IsStd ? t.std(dimRef, correction, keepdim) : t.var(dimRef, correction, keepdim));
}

// logsumexp(t, dims, keepdim)
Napi::Value Logsumexp(const Napi::CallbackInfo& info) {
  return WrapTensor(info.Env(), TensorArg(info, 0, "tensor").logsumexp(IntListArg(info, 1, "dim"), BoolArg(info, 2, "keepdim")));
}

// cumsum(t, dim)
Napi::Value Cumsum(const Napi::CallbackInfo& info) {
  return WrapTensor(info.Env(), TensorArg(info, 0, "tensor").cumsum(IntArg(info, 1, "dim")));
}

}  // namespace

void RegisterMathOps(Napi::Object exports) {
  TL_EXPORT(exports, "clamp", Clamp);
  TL_EXPORT(exports, "var", Dispersion<false>);
  TL_EXPORT(exports, "std", Dispersion<true>);
  TL_EXPORT(exports, "logsumexp", Logsumexp);
  TL_EXPORT(exports, "cumsum", Cumsum);
}

}  // namespace tl
