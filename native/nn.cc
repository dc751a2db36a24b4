// Functional forms of the plain layers: linear and embedding, one native call each.
#include "handle.h"
#include "errors.h"
#include "lookup.h"

namespace tl {
namespace {

// One input row (a decoding step): a matrix-vector product. libtorch's linear hands a 1-row
// input to a general GEMM, several times slower than gemv at these shapes (a GPT-2 lm_head:
// 1 x 768 by 768 x 50257). w is (out, in), any strides; the result has x's shape with the last
// dim out.
at::Tensor SingleRow(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  at::Tensor v = x.reshape({x.size(-1)});
  at::Tensor y = b.defined() ? at::addmv(b, w, v) : at::mv(w, v);
  std::vector<int64_t> outShape = x.sizes().vec();
  outShape.back() = w.size(0);
  return y.view(outShape);
}

// Widened only when every operand is fp16, so that ATen still refuses mixed dtypes.
bool AllHalfOnCpu(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  return x.scalar_type() == at::kHalf && w.scalar_type() == at::kHalf && (!b.defined() || b.scalar_type() == at::kHalf) &&
         x.device().is_cpu();
}

// x (out, in)-weight product for an input whose last dimension matches: one row through gemv,
// fp16 on CPU in fp32 (libtorch 1.13 has no fp16 matmul there, so the result is rounded once).
at::Tensor LinearOutIn(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  if (AllHalfOnCpu(x, w, b)) return at::linear(x.to(at::kFloat), w.to(at::kFloat), b.defined() ? b.to(at::kFloat) : b).to(at::kHalf);
  if (x.dim() >= 1 && x.numel() == x.size(-1) && w.dim() == 2) return SingleRow(x, w, b);
  return at::linear(x, w, b);
}

// linear(x, weight (out, in), bias | null): lib/nn/layers.ts checks the weight's rank and the
// bias before the call and words libtorch's refusal of an input that does not fit.
Napi::Value Linear(const Napi::CallbackInfo& info) {
  at::Tensor& x = TensorArg(info, 0, "input");
  at::Tensor& w = TensorArg(info, 1, "weight");
  at::Tensor b = OptionalTensorArg(info, 2, "bias");
  return WrapTensor(info.Env(), LinearOutIn(x, w, b));
}

// linearInOut(x, weight (in, out), bias | null): x W + b, GPT-2's Conv1D, as ONE op (addmm) rather
// than a matmul and a separate bias add. Checked in lib/nn/layers.ts as linear is.
Napi::Value LinearInOut(const Napi::CallbackInfo& info) {
  at::Tensor& x = TensorArg(info, 0, "input");
  at::Tensor& w = TensorArg(info, 1, "weight");
  at::Tensor b = OptionalTensorArg(info, 2, "bias");
  if (AllHalfOnCpu(x, w, b) || (x.dim() >= 1 && x.numel() == x.size(-1))) return WrapTensor(info.Env(), LinearOutIn(x, w.t(), b));
  std::vector<int64_t> outShape = x.sizes().vec();
  outShape.back() = w.size(-1);
  at::Tensor x2 = x.reshape({-1, x.size(-1)});
  return WrapTensor(info.Env(), (b.defined() ? at::addmm(b, x2, w) : at::mm(x2, w)).view(outShape));
}

// embedding(ids, weight (V, d), paddingIdx | -1)
Napi::Value Embedding(const Napi::CallbackInfo& info) {
  at::Tensor& ids = TensorArg(info, 0, "ids");
  at::Tensor& w = TensorArg(info, 1, "weight");
  if (w.dim() != 2)
    ThrowRangeError(info.Env(), "weight: expected a matrix (num_embeddings, embedding_dim), got shape " + c10::str(w.sizes()));
  if (ids.device() != w.device()) {
    ThrowError(info.Env(), "ids: are on " + DeviceName(ids.device()) + " but the embedding weight is on " + DeviceName(w.device()));
  }
  CheckTokenIds(info.Env(), ids, w.size(0));
  return WrapTensor(info.Env(), at::embedding(w, ids, IntArg(info, 2, "paddingIdx")));
}

}  // namespace

void RegisterNn(Napi::Object exports) {
  TL_EXPORT(exports, "linear", Linear);
  TL_EXPORT(exports, "embedding", Embedding);
  TL_EXPORT(exports, "linearInOut", LinearInOut);
}

}  // namespace tl
