// Functional forms of the plain layers: linear and embedding, one native call each.
#include "handle.h"
#include "errors.h"
#include "lookup.h"

namespace tl {
namespace {

// ATen's own messages ("expected scalar type Long but found Float") name neither argument.
void CheckSameKind(Napi::Env env, const at::Tensor& x, const char* xName, const at::Tensor& w, const char* what) {
  if (x.device() != w.device()) {
    ThrowError(env, std::string(xName) + ": is on " + DeviceName(x.device()) + " but the " + what + " is on " + DeviceName(w.device()) +
                        "; move it with to(\"" + DeviceName(w.device()) + "\")");
  }
  if (x.scalar_type() != w.scalar_type()) {
    ThrowTypeError(env, std::string(xName) + ": expected dtype " + DtypeName(w.scalar_type()) + " (the " + what + "'s dtype), got " +
                            DtypeName(x.scalar_type()));
  }
}

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

// linear(x, weight (out, in), bias | null)
Napi::Value Linear(const Napi::CallbackInfo& info) {
  at::Tensor& x = TensorArg(info, 0, "input");
  at::Tensor& w = TensorArg(info, 1, "weight");
  at::Tensor b = OptionalTensorArg(info, 2, "bias");
  if (w.dim() != 2) ThrowRangeError(info.Env(), "weight: expected a matrix (out_features, in_features), got shape " + c10::str(w.sizes()));
  CheckSameKind(info.Env(), x, "input", w, "layer weight");
  if (b.defined()) CheckSameKind(info.Env(), b, "bias", w, "layer weight");
  if (x.dim() < 1 || x.size(-1) != w.size(1)) {
    ThrowRangeError(info.Env(),
                    "input: expected last dimension " + std::to_string(w.size(1)) + " (in_features), got shape " + c10::str(x.sizes()));
  }
  if (x.scalar_type() == at::kHalf && x.device().is_cpu()) {
    // libtorch 1.13 has no fp16 matmul on CPU: compute in fp32 and round the result once.
    return WrapTensor(info.Env(), at::linear(x.to(at::kFloat), w.to(at::kFloat), b.defined() ? b.to(at::kFloat) : b).to(at::kHalf));
  }
  if (x.numel() == x.size(-1)) return WrapTensor(info.Env(), SingleRow(x, w, b));
  return WrapTensor(info.Env(), at::linear(x, w, b));
}

// linearInOut(x, weight (in, out), bias | null): x W + b, GPT-2's Conv1D, as ONE op (addmm) rather
// than a matmul and a separate bias add.
Napi::Value LinearInOut(const Napi::CallbackInfo& info) {
  at::Tensor& x = TensorArg(info, 0, "input");
  at::Tensor& w = TensorArg(info, 1, "weight");
  at::Tensor b = OptionalTensorArg(info, 2, "bias");
  if (w.dim() != 2) ThrowRangeError(info.Env(), "weight: expected a matrix (in_features, out_features), got shape " + c10::str(w.sizes()));
  CheckSameKind(info.Env(), x, "input", w, "layer weight");
  if (b.defined()) CheckSameKind(info.Env(), b, "bias", w, "layer weight");
  if (x.dim() < 1 || x.size(-1) != w.size(0)) {
    ThrowRangeError(info.Env(),
                    "input: expected last dimension " + std::to_string(w.size(0)) + " (in_features), got shape " + c10::str(x.sizes()));
  }
  at::Tensor wt = w.t();  // (out, in): a view
  if (x.scalar_type() == at::kHalf && x.device().is_cpu()) {
    return WrapTensor(info.Env(), at::linear(x.to(at::kFloat), wt.to(at::kFloat), b.defined() ? b.to(at::kFloat) : b).to(at::kHalf));
  }
  if (x.numel() == x.size(-1)) return WrapTensor(info.Env(), SingleRow(x, wt, b));
  std::vector<int64_t> outShape = x.sizes().vec();
  outShape.back() = w.size(1);
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
