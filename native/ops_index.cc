// Indexing and selection: where, maskedFill, triu/tril, gather, scatterAdd, indexAdd, oneHot,
// topk, sort, multinomial. One ATen call each, so autograd flows as in PyTorch.
//
// Argument rule (as in every ops_*.cc): an entry point with at most three arguments takes them
// positionally, which keeps small calls cheap; one with more takes the tensor(s) and ONE named
// options object (scatterAdd, indexAdd, topk, sort). lib/tensor.ts checks meaning (dtypes of
// indices and masks, ranges) and words the errors; this file checks only what keeps memory safe.
#include "handle.h"
#include "errors.h"
#include "options.h"
#include "scalar.h"
#include "wrap_list.h"

namespace tl {
namespace {

// On CUDA an index out of range is a device-side assert that leaves the CUDA context unusable
// for the rest of the process; CPU kernels check their indices themselves. On CUDA, one
// reduction (and a sync) names the bad index first. Dtype errors are left to ATen.
void CheckCudaIndexRange(Napi::Env env, const at::Tensor& self, int64_t dim, const at::Tensor& index) {
  if (!index.is_cuda() || index.numel() == 0 || !at::isIntegralType(index.scalar_type(), false)) return;
  const int64_t d = at::maybe_wrap_dim(dim, self.dim());
  const int64_t size = self.dim() == 0 ? 1 : self.size(d);
  auto [lo, hi] = at::aminmax(index);
  const int64_t min = lo.item<int64_t>(), max = hi.item<int64_t>();
  if (min < 0 || max >= size) {
    ThrowRangeError(env, "index: " + std::to_string(min < 0 ? min : max) + " is out of range for dim " + std::to_string(dim) + " of size " +
                             std::to_string(size) + " (valid indices are 0.." + std::to_string(size - 1) + ")");
  }
}

// The same for multinomial's weights, which CUDA kernels check only with a device assert.
void CheckCudaWeights(Napi::Env env, const at::Tensor& weights) {
  if (!weights.is_cuda() || weights.numel() == 0 || !at::isFloatingType(weights.scalar_type())) return;
  const bool valid = at::logical_and(weights.ge(0), at::isfinite(weights)).all().item<bool>() && weights.sum(-1).gt(0).all().item<bool>();
  if (!valid) ThrowRangeError(env, "weights: expected finite values >= 0 with a positive sum in each row");
}

// where(condition, input | number, other | number)
Napi::Value Where(const Napi::CallbackInfo& info) {
  at::Tensor& cond = TensorArg(info, 0, "condition");
  const bool aNum = info[1].IsNumber(), bNum = info[2].IsNumber();
  if (aNum && bNum) {
    // Two numbers promote as in PyTorch: integers give int64, anything else float32.
    return WrapTensor(info.Env(), at::where(cond, NumberScalar(info[1]), NumberScalar(info[2])));
  }
  if (aNum) return WrapTensor(info.Env(), at::where(cond, NumberScalar(info[1]), TensorArg(info, 2, "other")));
  if (bNum) return WrapTensor(info.Env(), at::where(cond, TensorArg(info, 1, "input"), NumberScalar(info[2])));
  return WrapTensor(info.Env(), at::where(cond, TensorArg(info, 1, "input"), TensorArg(info, 2, "other")));
}

// maskedFill(t, mask, value | 0-d tensor)
Napi::Value MaskedFill(const Napi::CallbackInfo& info) {
  at::Tensor& t = TensorArg(info, 0, "tensor");
  at::Tensor& mask = TensorArg(info, 1, "mask");
  if (info[2].IsNumber()) return WrapTensor(info.Env(), t.masked_fill(mask, NumberScalar(info[2])));
  return WrapTensor(info.Env(), t.masked_fill(mask, TensorArg(info, 2, "value")));
}

// triu(t, diagonal) / tril(t, diagonal)
Napi::Value Triu(const Napi::CallbackInfo& info) {
  return WrapTensor(info.Env(), TensorArg(info, 0, "tensor").triu(IntArg(info, 1, "diagonal")));
}
Napi::Value Tril(const Napi::CallbackInfo& info) {
  return WrapTensor(info.Env(), TensorArg(info, 0, "tensor").tril(IntArg(info, 1, "diagonal")));
}

// gather(t, dim, index)
Napi::Value Gather(const Napi::CallbackInfo& info) {
  at::Tensor& t = TensorArg(info, 0, "tensor");
  const int64_t dim = IntArg(info, 1, "dim");
  at::Tensor& index = TensorArg(info, 2, "index");
  CheckCudaIndexRange(info.Env(), t, dim, index);
  return WrapTensor(info.Env(), t.gather(dim, index));
}

// scatterAdd(t, { dim, index, src }): out of place.
Napi::Value ScatterAdd(const Napi::CallbackInfo& info) {
  at::Tensor& t = TensorArg(info, 0, "tensor");
  Napi::Object o = OptionsArg(info, 1);
  const int64_t dim = IntOption(o, "dim");
  at::Tensor& index = TensorOption(o, "index");
  CheckCudaIndexRange(info.Env(), t, dim, index);
  return WrapTensor(info.Env(), t.scatter_add(dim, index, TensorOption(o, "src")));
}

// indexAdd(t, { dim, index, source, alpha }): out of place.
Napi::Value IndexAdd(const Napi::CallbackInfo& info) {
  at::Tensor& t = TensorArg(info, 0, "tensor");
  Napi::Object o = OptionsArg(info, 1);
  const int64_t dim = IntOption(o, "dim");
  at::Tensor& index = TensorOption(o, "index");
  CheckCudaIndexRange(info.Env(), t, dim, index);
  return WrapTensor(info.Env(), t.index_add(dim, index, TensorOption(o, "source"), at::Scalar(NumberOption(o, "alpha"))));
}

// oneHot(t, numClasses): -1 infers the count from the largest index.
Napi::Value OneHot(const Napi::CallbackInfo& info) {
  return WrapTensor(info.Env(), at::one_hot(TensorArg(info, 0, "tensor"), IntArg(info, 1, "numClasses")));
}

// topk(t, { k, dim, largest, sorted }) -> [values, indices]
Napi::Value Topk(const Napi::CallbackInfo& info) {
  at::Tensor& t = TensorArg(info, 0, "tensor");
  Napi::Object o = OptionsArg(info, 1);
  auto [values, indices] = t.topk(IntOption(o, "k"), IntOption(o, "dim"), BoolOption(o, "largest", true), BoolOption(o, "sorted", true));
  return WrapTensorList(info.Env(), {values, indices});
}

// sort(t, { dim, descending, stable }) -> [values, indices]
Napi::Value Sort(const Napi::CallbackInfo& info) {
  at::Tensor& t = TensorArg(info, 0, "tensor");
  Napi::Object o = OptionsArg(info, 1);
  auto [values, indices] = t.sort(BoolOption(o, "stable", false), IntOption(o, "dim"), BoolOption(o, "descending", false));
  return WrapTensorList(info.Env(), {values, indices});
}

// multinomial(probs, numSamples, replacement): draws from libtorch's default generator, so
// manualSeed makes it reproducible.
Napi::Value Multinomial(const Napi::CallbackInfo& info) {
  at::Tensor& weights = TensorArg(info, 0, "tensor");
  const int64_t numSamples = IntArg(info, 1, "numSamples");
  const bool replacement = BoolArg(info, 2, "replacement");
  CheckCudaWeights(info.Env(), weights);
  return WrapTensor(info.Env(), weights.multinomial(numSamples, replacement));
}

}  // namespace

void RegisterIndexOps(Napi::Object exports) {
  TL_EXPORT(exports, "where", Where);
  TL_EXPORT(exports, "maskedFill", MaskedFill);
  TL_EXPORT(exports, "triu", Triu);
  TL_EXPORT(exports, "tril", Tril);
  TL_EXPORT(exports, "gather", Gather);
  TL_EXPORT(exports, "scatterAdd", ScatterAdd);
  TL_EXPORT(exports, "indexAdd", IndexAdd);
  TL_EXPORT(exports, "oneHot", OneHot);
  TL_EXPORT(exports, "topk", Topk);
  TL_EXPORT(exports, "sort", Sort);
  TL_EXPORT(exports, "multinomial", Multinomial);
}

}  // namespace tl
