// DoRA (weight-decomposed LoRA, PEFT's use_dora): the adapted weight is m ⊙ (W + s·B·A) / ‖W + s·B·A‖,
// with the norm taken per output feature (rows of the (out, in) layout; an Embedding's out is its
// embedding dim) and treated as a constant in backward (DoRA paper §4.3, as PEFT does).
//
//   Linear:    y = x Wᵀ + b + (m/n − 1) ⊙ (x̃ Wᵀ) + (m/n) ⊙ s·(x̃ Aᵀ) Bᵀ,  x̃ = dropout(x)
//              (with no dropout active this is (m/n) ⊙ (x Wᵀ + s·x Aᵀ Bᵀ) + b)
//   Embedding: y = (m/n) ⊙ (W[ids] + s·Aᵀ[ids] Bᵀ)
//   merge:     W ← (m/n) ⊙ (W + s·B·A) in the weight's layout, computed in fp32 for half weights
//
// Each forward is one native call built from libtorch ops (autograd reaches A, B and m).
#include "handle.h"
#include "errors.h"
#include "options.h"
#include "lora.h"
#include "workers.h"

namespace tl {
namespace {

struct Dora {
  at::Tensor weight, A, B, magnitude;
  double scale = 1;
  bool transposed = false;  // the weight is stored (in, out): Conv1D, or an Embedding's (V, d)
};

Dora DoraArgs(Napi::Env env, const Napi::Object& o, bool embedding) {
  Dora d;
  d.weight = TensorOption(o, "weight");
  d.A = TensorOption(o, "A");
  d.B = TensorOption(o, "B");
  d.scale = NumberOption(o, "scale");
  d.transposed = embedding || o.Get("fanInFanOut").ToBoolean();
  d.magnitude = OptionalTensorOption(o, "magnitude");
  const at::Tensor& w = d.weight;
  if (w.dim() != 2) ThrowRangeError(env, "options.weight: expected a 2-D weight, got shape " + c10::str(w.sizes()));
  const int64_t out = d.transposed ? w.size(1) : w.size(0), in = d.transposed ? w.size(0) : w.size(1);
  if (d.A.dim() != 2 || d.B.dim() != 2 || d.A.size(1) != in || d.B.size(0) != out || d.A.size(0) != d.B.size(1)) {
    ThrowRangeError(env, "options.A/B: factors " + c10::str(d.A.sizes()) + " and " + c10::str(d.B.sizes()) + " do not fit the weight " +
                             c10::str(w.sizes()));
  }
  if (d.magnitude.defined() && (d.magnitude.dim() != 1 || d.magnitude.size(0) != out)) {
    ThrowRangeError(env, "options.magnitude: expected shape [" + std::to_string(out) + "], got " + c10::str(d.magnitude.sizes()));
  }
  return d;
}

at::Tensor OutIn(const Dora& d, const at::Tensor& w) { return d.transposed ? w.t() : w; }

// ‖W + s·B·A‖ per output feature, without gradient; in fp32 for half weights.
at::Tensor WeightNorm(const Dora& d) {
  at::NoGradGuard noGrad;
  const bool half = d.weight.scalar_type() == at::kHalf || d.weight.scalar_type() == at::kBFloat16;
  const auto dtype = half ? at::kFloat : d.weight.scalar_type();
  at::Tensor combined = OutIn(d, d.weight).to(dtype) + d.scale * d.B.detach().to(dtype).matmul(d.A.detach().to(dtype));
  return at::linalg_vector_norm(combined, 2, {1}, false, c10::nullopt);
}

// loraDoraMagnitude({ weight, A, B, scale, fanInFanOut, embedding }) -> m = ‖W + s·B·A‖ (the init).
Napi::Value LoraDoraMagnitude(const Napi::CallbackInfo& info) {
  Napi::Object o = OptionsArg(info, 0);
  Dora d = DoraArgs(info.Env(), o, o.Get("embedding").ToBoolean());
  return WrapTensor(info.Env(), WeightNorm(d).to(d.weight.scalar_type()).contiguous());
}

// loraDoraLinear({ x, weight, bias, fanInFanOut, training, A, B, magnitude, scale, dropout }) -> y
Napi::Value LoraDoraLinear(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = OptionsArg(info, 0);
  Dora d = DoraArgs(env, o, false);
  if (!d.magnitude.defined()) ThrowTypeError(env, "options.magnitude: expected a tensor");
  at::Tensor& x = TensorOption(o, "x");
  at::Tensor bias = OptionalTensorOption(o, "bias");
  const double dropout = NumberOption(o, "dropout");
  const bool training = o.Get("training").ToBoolean();
  const at::Tensor Wt = OutIn(d, d.weight);
  if (x.dim() < 1 || x.size(-1) != Wt.size(1))
    ThrowRangeError(env, "input: expected last dimension " + std::to_string(Wt.size(1)) + ", got shape " + c10::str(x.sizes()));

  at::Tensor scaleByNorm = d.magnitude / WeightNorm(d).to(d.magnitude.scalar_type());
  at::Tensor result = at::linear(x, Wt, bias);
  const bool dropped = training && dropout > 0;
  at::Tensor xd = dropped ? at::dropout(x, dropout, true) : x;
  at::Tensor lora = at::linear(at::linear(xd, d.A), d.B);
  // PEFT's order: the base part reuses the base output when x̃ = x, else recomputes it on x̃.
  at::Tensor baseResult = dropped ? at::linear(xd, Wt) : (bias.defined() ? result - bias : result);
  return WrapTensor(env, result + ((scaleByNorm - 1) * baseResult + scaleByNorm * lora * d.scale));
}

// loraDoraEmbedding({ ids, weight, paddingIdx, A, B, magnitude, scale }) -> y
Napi::Value LoraDoraEmbedding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = OptionsArg(info, 0);
  Dora d = DoraArgs(env, o, true);
  if (!d.magnitude.defined()) ThrowTypeError(env, "options.magnitude: expected a tensor");
  at::Tensor& ids = TensorOption(o, "ids");
  if (ids.scalar_type() != at::kLong && ids.scalar_type() != at::kInt) ThrowTypeError(env, "ids: expected an integer tensor");
  const int64_t padding = IntOption(o, "paddingIdx");
  const int64_t V = d.weight.size(0);
  if (ids.numel() > 0) {
    const int64_t lo = ids.min().item<int64_t>(), hi = ids.max().item<int64_t>();
    if (lo < 0 || hi >= V)
      ThrowRangeError(env, "ids: expected token ids in [0, " + std::to_string(V) + "), got values in [" + std::to_string(lo) + ", " +
                               std::to_string(hi) + "]");
  }
  at::Tensor scaleByNorm = d.magnitude / WeightNorm(d).to(d.magnitude.scalar_type());
  at::Tensor result = at::embedding(d.weight, ids, padding);
  at::Tensor lora = at::embedding(d.A.t(), ids, padding).matmul(d.B.t());
  return WrapTensor(env, scaleByNorm * result + scaleByNorm * lora * d.scale);
}

// m ⊙ (W + s·B·A) / ‖W + s·B·A‖ in the weight's layout and dtype, computed aside (the weight is
// only read: this runs on a worker for loraDoraMergeAsync). A std::runtime_error, not a JS error,
// refuses a non-finite result: it may be thrown off the main thread.
at::Tensor ComputeDoraMerge(const Dora& d, bool safe) {
  at::NoGradGuard noGrad;
  const bool half = d.weight.scalar_type() == at::kHalf || d.weight.scalar_type() == at::kBFloat16;
  const auto dtype = half ? at::kFloat : d.weight.scalar_type();
  at::Tensor combined = OutIn(d, d.weight).to(dtype) + d.scale * d.B.to(dtype).matmul(d.A.to(dtype));
  at::Tensor norm = at::linalg_vector_norm(combined, 2, {1}, false, c10::nullopt);
  at::Tensor mergedOutIn = (d.magnitude.to(dtype) / norm).unsqueeze(1) * combined;
  at::Tensor merged = OutIn(d, mergedOutIn).to(d.weight.scalar_type()).contiguous();
  if (safe && !at::isfinite(merged).all().item<bool>()) {
    throw std::runtime_error("merge refused: the merged weight would contain NaN or Inf values; the base weight is unchanged");
  }
  return merged;
}

Dora DoraMergeArgs(Napi::Env env, const Napi::Object& o) {
  Dora d = DoraArgs(env, o, o.Get("embedding").ToBoolean());
  if (!d.magnitude.defined()) ThrowTypeError(env, "options.magnitude: expected a tensor");
  return d;
}

// loraDoraMerge({ weight, A, B, magnitude, scale, fanInFanOut, embedding, safe, keepBackup }) -> backup | null
Napi::Value LoraDoraMerge(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = OptionsArg(info, 0);
  Dora d = DoraMergeArgs(env, o);
  at::Tensor merged = ComputeDoraMerge(d, o.Get("safe").ToBoolean());
  if (!o.Get("keepBackup").ToBoolean()) {
    at::NoGradGuard noGrad;
    d.weight.copy_(merged);
    return env.Null();
  }
  return WrapTensor(env, SwapInMerged(d.weight, merged));
}

// loraDoraMergeAsync(same options) -> Promise<backup | null>: loraDoraMerge on a worker. As
// loraMergeAsync does, the worker reads snapshots of the factors and the magnitude (an optimizer
// step on the main thread must not leak half-applied into the merge) and computes the merged
// weight aside; the completion, on the main thread, installs it, so that nothing ever reads the
// weight half-merged.
Napi::Value LoraDoraMergeAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = OptionsArg(info, 0);
  Dora d = DoraMergeArgs(env, o);
  const bool safe = o.Get("safe").ToBoolean(), keep = o.Get("keepBackup").ToBoolean();
  {
    at::NoGradGuard noGrad;
    d.A = d.A.clone();
    d.B = d.B.clone();
    d.magnitude = d.magnitude.clone();
  }
  const at::Tensor w = d.weight;
  return RunAsync(
      env, "torch-lora:merge", [=]() { return std::vector<at::Tensor>{ComputeDoraMerge(d, safe)}; },
      [w, keep](Napi::Env env, std::vector<at::Tensor>& r) {
        at::Tensor backup = SwapInMerged(w, r[0]);
        return keep ? WrapTensor(env, std::move(backup)) : env.Null();
      });
}

}  // namespace

void RegisterLoraDora(Napi::Object exports) {
  TL_EXPORT(exports, "loraDoraMagnitude", LoraDoraMagnitude);
  TL_EXPORT(exports, "loraDoraLinear", LoraDoraLinear);
  TL_EXPORT(exports, "loraDoraEmbedding", LoraDoraEmbedding);
  TL_EXPORT(exports, "loraDoraMerge", LoraDoraMerge);
  TL_EXPORT(exports, "loraDoraMergeAsync", LoraDoraMergeAsync);
}

}  // namespace tl
