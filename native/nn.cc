// Functional forms of the plain layers: linear and embedding, one native call each.
#include "handle.h"
#include "errors.h"
#include "lookup.h"

namespace tl {
namespace {

// linear(x, weight (out, in), bias | null): lib/nn/layers.ts checks the weight's rank and the
// bias before the call and words libtorch's refusal of an input that does not fit.
Napi::Value Linear(const Napi::CallbackInfo& info) {
  at::Tensor& x = TensorArg(info, 0, "input");
  at::Tensor& w = TensorArg(info, 1, "weight");
  at::Tensor b = OptionalTensorArg(info, 2, "bias");
  // Widened only when every operand is fp16, so that ATen still refuses mixed dtypes.
  const bool allHalf = x.scalar_type() == at::kHalf && w.scalar_type() == at::kHalf && (!b.defined() || b.scalar_type() == at::kHalf);
  if (allHalf && x.device().is_cpu()) {
    // libtorch 1.13 has no fp16 matmul on CPU: compute in fp32 and round the result once.
    return WrapTensor(info.Env(), at::linear(x.to(at::kFloat), w.to(at::kFloat), b.defined() ? b.to(at::kFloat) : b).to(at::kHalf));
  }
  return WrapTensor(info.Env(), at::linear(x, w, b));
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
}

}  // namespace tl
