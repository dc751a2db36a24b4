// scaledDotProductAttention: softmax(q kᵀ · scale + mask) v as ONE autograd node with a fused
// backward. libtorch 1.13 has no scaled_dot_product_attention; the semantics follow PyTorch 2's
// F.scaled_dot_product_attention:
//   q (..., H, T, E), k (..., Hkv, S, E), v (..., Hkv, S, Ev) → (..., H, T, Ev);
//   grouped-query attention when Hkv < H: query head h uses key/value head h / (H / Hkv);
//   a boolean mask (true = attend) or an additive float mask, broadcastable to (..., H, T, S);
//   causal: query i attends to keys j <= i (top-left aligned, as PyTorch's is_causal);
//   a row with no key to attend to gives zeros (and zero gradients), not NaN, as PyTorch's
//   math path does since 2.5.
// Shape and dtype checks with their wording live in lib/attention.ts.
#include <c10/util/Optional.h>

#include <cmath>
#include <limits>

#include "errors.h"
#include "handle.h"
#include "options.h"

namespace tl {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The grouped layout: q (..., H, T, E) is viewed as (N·Hkv, R·T, E) with R = H / Hkv, so that
// one batched matmul against k (N·Hkv, S, E) serves every query head of a group without
// repeating k and v R times; the matmuls of backward then sum over the group by themselves.
struct Layout {
  int64_t groups;  // N·Hkv
  int64_t rows;    // R·T
  int64_t T, S;
  std::vector<int64_t> scoreShape;  // (..., H, T, S): where the mask broadcasts
};

Layout LayoutOf(const at::Tensor& q, const at::Tensor& k) {
  Layout l;
  l.T = q.size(-2);
  l.S = k.size(-2);
  l.groups = k.numel() / (l.S * k.size(-1));
  l.rows = q.numel() / (q.size(-1) * l.groups);
  l.scoreShape = q.sizes().vec();
  l.scoreShape.back() = l.S;
  return l;
}

struct Forward {
  at::Tensor out, probs, dropMask;  // probs: the softmax before dropout
};

// probs = softmax(qs kᵀ + mask), out = dropout(probs) v, in the grouped layout, where qs is the
// query already multiplied by the scale (smaller than the scores when T > E, and what the key
// gradient needs).
Forward Compute(const at::Tensor& qs3, const at::Tensor& k3, const at::Tensor& v3, const at::Tensor& mask, const Layout& l, bool causal,
                double dropoutP) {
  at::Tensor scores = at::bmm(qs3, k3.transpose(1, 2));
  at::Tensor scores4 = scores.view(l.scoreShape);
  constexpr double kNegInf = -std::numeric_limits<double>::infinity();
  if (causal) scores4.masked_fill_(at::ones({l.T, l.S}, qs3.options().dtype(at::kBool)).triu_(1), kNegInf);
  if (mask.defined()) {
    if (mask.scalar_type() == at::kBool)
      scores4.masked_fill_(mask.logical_not(), kNegInf);
    else
      scores4.add_(mask);
  }
  Forward f;
  f.probs = at::_softmax(scores, -1, false);
  if (mask.defined()) {
    // A row whose every score is -inf has softmax 0/0: give it zeros. Only a mask can empty a
    // row: the causal pattern always keeps key 0.
    at::Tensor empty = at::amax(scores, {-1}, true).eq(kNegInf);
    f.probs.masked_fill_(empty, 0);
  }
  at::Tensor used = f.probs;
  if (dropoutP > 0) std::tie(used, f.dropMask) = at::native_dropout(f.probs, dropoutP, true);
  f.out = at::bmm(used, v3);
  return f;
}

// Causal attention without an explicit mask or dropout skips the scores above the diagonal:
// queries are taken in blocks of rows, and block [t0, t1) only meets keys [0, t1). With 4 blocks
// the two big matmuls do 5/8 of the dense work. Returns the block height, or 0 for the dense path.
int64_t CausalBlockRows(const Layout& l, bool causal, const at::Tensor& mask, double dropoutP) {
  if (!causal || mask.defined() || dropoutP > 0 || l.T < 64) return 0;
  const int64_t blocks = std::min<int64_t>(8, l.T / 32);
  return (l.T + blocks - 1) / blocks;
}

struct Blocked {
  at::Tensor out;
  std::vector<at::Tensor> probs;  // one (N·Hkv, R·rows, keys) softmax per block of query rows
};

// The query rows [t0, t0 + rows) of every head of the grouped layout (N·Hkv, R·T, E), as
// (N·Hkv, R·rows, E): a view when R = 1.
at::Tensor QueryRows(const at::Tensor& x3, int64_t T, int64_t t0, int64_t rows) {
  const int64_t G = x3.size(0), R = x3.size(1) / T;
  return x3.view({G, R, T, x3.size(2)}).narrow(2, t0, rows).reshape({G, R * rows, x3.size(2)});
}

Blocked ComputeCausalBlocks(const at::Tensor& qs3, const at::Tensor& k3, const at::Tensor& v3, const Layout& l, int64_t blockRows) {
  constexpr double kNegInf = -std::numeric_limits<double>::infinity();
  const int64_t G = qs3.size(0), R = l.rows / l.T, Ev = v3.size(2);
  Blocked b;
  b.out = at::empty({G, R, l.T, Ev}, v3.options());
  for (int64_t t0 = 0; t0 < l.T; t0 += blockRows) {
    const int64_t rows = std::min(blockRows, l.T - t0), keys = std::min(l.S, t0 + rows);
    at::Tensor scores = at::bmm(QueryRows(qs3, l.T, t0, rows), k3.narrow(1, 0, keys).transpose(1, 2));
    // Row t0 + i may see keys j <= t0 + i.
    scores.view({G, R, rows, keys}).masked_fill_(at::ones({rows, keys}, qs3.options().dtype(at::kBool)).triu_(t0 + 1), kNegInf);
    at::Tensor probs = at::_softmax(scores, -1, false);
    b.out.narrow(2, t0, rows).copy_(at::bmm(probs, v3.narrow(1, 0, keys)).view({G, R, rows, Ev}));
    b.probs.push_back(probs);
  }
  b.out = b.out.view({G, R * l.T, Ev});
  return b;
}

// Gradients of the blocked forward; gq, gk, gv stay undefined when not wanted.
void CausalBlocksBackward(const at::Tensor& g3, const at::Tensor& qs3, const at::Tensor& k3, const at::Tensor& v3,
                          const std::vector<at::Tensor>& probs, int64_t T, int64_t blockRows, double scale, bool wantQ, bool wantK,
                          bool wantV, at::Tensor& gq, at::Tensor& gk, at::Tensor& gv) {
  const int64_t G = qs3.size(0), R = qs3.size(1) / T, S = k3.size(1), E = qs3.size(2);
  if (wantQ) gq = at::empty({G, R, T, E}, qs3.options());
  if (wantK) gk = at::zeros_like(k3);
  if (wantV) gv = at::zeros_like(v3);
  for (size_t b = 0; b < probs.size(); ++b) {
    const int64_t t0 = static_cast<int64_t>(b) * blockRows, rows = std::min(blockRows, T - t0), keys = std::min(S, t0 + rows);
    at::Tensor gb = QueryRows(g3, T, t0, rows);
    if (wantV) gv.narrow(1, 0, keys).baddbmm_(probs[b].transpose(1, 2), gb);
    if (!wantQ && !wantK) continue;
    at::Tensor gs = at::_softmax_backward_data(at::bmm(gb, v3.narrow(1, 0, keys).transpose(1, 2)), probs[b], -1, probs[b].scalar_type());
    if (wantQ) gq.narrow(2, t0, rows).copy_(at::bmm(gs, k3.narrow(1, 0, keys)).mul_(scale).view({G, R, rows, E}));
    if (wantK) gk.narrow(1, 0, keys).baddbmm_(gs.transpose(1, 2), QueryRows(qs3, T, t0, rows));
  }
}

struct AttentionFunction : public torch::autograd::Function<AttentionFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const c10::optional<at::Tensor>& mask, double scale, bool causal, double dropoutP) {
    const Layout l = LayoutOf(q, k);
    at::Tensor qs3 = q.reshape({l.groups, l.rows, q.size(-1)}).mul(scale);
    at::Tensor k3 = k.reshape({l.groups, l.S, k.size(-1)});
    at::Tensor v3 = v.reshape({l.groups, l.S, v.size(-1)});
    std::vector<int64_t> outShape = q.sizes().vec();
    outShape.back() = v.size(-1);
    ctx->saved_data["s"] = scale;
    ctx->saved_data["q"] = c10::IValue(q.sizes().vec());
    ctx->saved_data["k"] = c10::IValue(k.sizes().vec());
    if (const int64_t blockRows = CausalBlockRows(l, causal, mask.has_value() ? *mask : at::Tensor(), dropoutP)) {
      Blocked b = ComputeCausalBlocks(qs3, k3, v3, l, blockRows);
      std::vector<at::Tensor> saved{qs3, k3, v3};
      saved.insert(saved.end(), b.probs.begin(), b.probs.end());
      ctx->save_for_backward(saved);
      ctx->saved_data["b"] = blockRows;
      return b.out.view(outShape);
    }
    Forward f = Compute(qs3, k3, v3, mask.has_value() ? *mask : at::Tensor(), l, causal, dropoutP);
    ctx->save_for_backward({qs3, k3, v3, f.probs, f.dropMask});
    ctx->saved_data["p"] = dropoutP;
    ctx->saved_data["shape"] = c10::IValue(l.scoreShape);
    if (mask.has_value() && mask->requires_grad()) ctx->saved_data["mask"] = c10::IValue(mask->sizes().vec());
    return f.out.view(outShape);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor &qs3 = saved[0], &k3 = saved[1], &v3 = saved[2];
    const double scale = ctx->saved_data["s"].toDouble();
    at::Tensor g = grads[0].reshape({qs3.size(0), qs3.size(1), v3.size(2)});
    std::vector<int64_t> qShape = ctx->saved_data["q"].toIntVector(), kShape = ctx->saved_data["k"].toIntVector(), vShape = kShape;
    vShape.back() = v3.size(2);
    if (ctx->saved_data.count("b")) {
      at::Tensor gq, gk, gv;
      std::vector<at::Tensor> probs(saved.begin() + 3, saved.end());
      CausalBlocksBackward(g, qs3, k3, v3, probs, qShape[qShape.size() - 2], ctx->saved_data["b"].toInt(), scale, ctx->needs_input_grad(0),
                           ctx->needs_input_grad(1), ctx->needs_input_grad(2), gq, gk, gv);
      return {gq.defined() ? gq.view(qShape) : gq,
              gk.defined() ? gk.view(kShape) : gk,
              gv.defined() ? gv.view(vShape) : gv,
              at::Tensor(),
              at::Tensor(),
              at::Tensor(),
              at::Tensor()};
    }
    const at::Tensor &probs = saved[3], &dropMask = saved[4];
    const double dropoutP = ctx->saved_data["p"].toDouble();
    const bool dropped = dropMask.defined();
    at::Tensor gq, gk, gv, gMask;
    if (ctx->needs_input_grad(2)) {
      at::Tensor used = dropped ? at::native_dropout_backward(probs, dropMask, dropoutP < 1 ? 1 / (1 - dropoutP) : 0) : probs;
      gv = at::bmm(used.transpose(1, 2), g).view(vShape);
    }
    const bool scoresGrad = ctx->needs_input_grad(0) || ctx->needs_input_grad(1) || ctx->saved_data.count("mask");
    if (scoresGrad) {
      at::Tensor gp = at::bmm(g, v3.transpose(1, 2));
      if (dropped) gp = at::native_dropout_backward(gp, dropMask, dropoutP < 1 ? 1 / (1 - dropoutP) : 0);
      at::Tensor gs = at::_softmax_backward_data(gp, probs, -1, probs.scalar_type());
      if (ctx->saved_data.count("mask")) {
        gMask = at::sum_to(gs.view(ctx->saved_data["shape"].toIntVector()), ctx->saved_data["mask"].toIntVector());
      }
      if (ctx->needs_input_grad(0)) gq = at::bmm(gs, k3).mul_(scale).view(qShape);
      if (ctx->needs_input_grad(1)) gk = at::bmm(gs.transpose(1, 2), qs3).view(kShape);
    }
    return {gq, gk, gv, gMask, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

bool NeedsGraph(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask) {
  if (!at::GradMode::is_enabled()) return false;
  return q.requires_grad() || k.requires_grad() || v.requires_grad() || (mask.defined() && mask.requires_grad());
}

at::Tensor Attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask, double scale, bool causal,
                     double dropoutP) {
  if (!NeedsGraph(q, k, v, mask)) {
    // Inference: the same math without the autograd node's context and saved tensors.
    const Layout l = LayoutOf(q, k);
    std::vector<int64_t> outShape = q.sizes().vec();
    outShape.back() = v.size(-1);
    if (const int64_t blockRows = CausalBlockRows(l, causal, mask, dropoutP)) {
      at::Tensor qs3 = q.reshape({l.groups, l.rows, q.size(-1)}).mul(scale);
      return ComputeCausalBlocks(qs3, k.reshape({l.groups, l.S, k.size(-1)}), v.reshape({l.groups, l.S, v.size(-1)}), l, blockRows)
          .out.view(outShape);
    }
    Forward f = Compute(q.reshape({l.groups, l.rows, q.size(-1)}).mul(scale), k.reshape({l.groups, l.S, k.size(-1)}),
                        v.reshape({l.groups, l.S, v.size(-1)}), mask, l, causal, dropoutP);
    return f.out.view(outShape);
  }
  c10::optional<at::Tensor> m = mask.defined() ? c10::optional<at::Tensor>(mask) : c10::nullopt;
  return AttentionFunction::apply(q, k, v, m, scale, causal, dropoutP);
}

// scaledDotProductAttention({ query, key, value, mask?, causal, dropoutP, scale })
Napi::Value ScaledDotProductAttention(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = OptionsArg(info, 0);
  at::Tensor &q = TensorOption(o, "query"), &k = TensorOption(o, "key"), &v = TensorOption(o, "value");
  at::Tensor mask = OptionalTensorOption(o, "mask");
  const double scale = NumberOption(o, "scale"), dropoutP = NumberOption(o, "dropoutP");
  const bool causal = BoolOption(o, "causal");
  // What keeps the reshapes and views above well-defined; lib/attention.ts words the errors.
  const int64_t d = q.dim();
  if (d < 3 || k.dim() != d || v.dim() != d)
    ThrowRangeError(env, "scaledDotProductAttention: query, key and value must have the same rank >= 3");
  for (int64_t i = 0; i < d - 3; ++i) {
    if (k.size(i) != q.size(i) || v.size(i) != q.size(i)) ThrowRangeError(env, "scaledDotProductAttention: batch dims differ");
  }
  const int64_t H = q.size(-3), Hkv = k.size(-3);
  if (v.size(-3) != Hkv || Hkv < 1 || H % Hkv != 0 || k.size(-1) != q.size(-1) || v.size(-2) != k.size(-2)) {
    ThrowRangeError(env, "scaledDotProductAttention: incompatible head counts or sizes");
  }
  if (q.numel() == 0 || k.numel() == 0 || v.numel() == 0) ThrowRangeError(env, "scaledDotProductAttention: empty query, key or value");
  if (mask.defined() && mask.scalar_type() != at::kBool && !mask.is_floating_point()) {
    ThrowTypeError(env, "mask: expected a boolean or floating-point tensor");
  }
  if (q.scalar_type() == at::kHalf && q.device().is_cpu()) {
    // libtorch 1.13 has no fp16 matmul on CPU: compute in fp32 and round the result once.
    at::Tensor m = mask.defined() && mask.is_floating_point() ? mask.to(at::kFloat) : mask;
    return WrapTensor(env, Attention(q.to(at::kFloat), k.to(at::kFloat), v.to(at::kFloat), m, scale, causal, dropoutP).to(at::kHalf));
  }
  return WrapTensor(env, Attention(q, k, v, mask, scale, causal, dropoutP));
}

// attentionWithCache({ query, key, value, cacheKey, cacheValue, past, mask?, causal, scale }): the
// decoding step of a key/value cache in one call. Writes key and value (..., Hkv, T, E) into the
// preallocated buffers (..., Hkv, C, E) at positions [past, past + T) of dim -2, in place, then
// attends the query over the first past + T cached positions (views of the buffers, no copy).
// A cache grown by cat instead copies every earlier key and value at every step.
Napi::Value AttentionWithCache(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = OptionsArg(info, 0, "options");
  at::Tensor &q = TensorOption(o, "query"), &k = TensorOption(o, "key"), &v = TensorOption(o, "value");
  at::Tensor &ck = TensorOption(o, "cacheKey"), &cv = TensorOption(o, "cacheValue");
  at::Tensor mask = OptionalTensorOption(o, "mask");
  const double scale = NumberOption(o, "scale"), pastValue = NumberOption(o, "past");
  const bool causal = BoolOption(o, "causal");
  // What keeps the in-place writes inside the buffers; lib/models/context.ts words the errors.
  const int64_t d = q.dim();
  if (d < 3 || k.dim() != d || v.dim() != d || ck.dim() != d || cv.dim() != d)
    ThrowRangeError(env, "attentionWithCache: query, key, value and the cache buffers must have the same rank >= 3");
  if (!(pastValue >= 0) || std::floor(pastValue) != pastValue)
    ThrowRangeError(env, "past: expected an integer >= 0, got " + Describe(o.Get("past")));
  const int64_t past = static_cast<int64_t>(pastValue), T = k.size(-2);
  if (v.size(-2) != T || past + T > ck.size(-2) || past + T > cv.size(-2))
    ThrowRangeError(env, "attentionWithCache: the new keys and values do not fit the cache buffers");
  for (int64_t i = 0; i < d; ++i) {
    if (i == d - 2) continue;
    if (ck.size(i) != k.size(i) || cv.size(i) != v.size(i))
      ThrowRangeError(env, "attentionWithCache: the cache buffers' shape differs from the keys' or values'");
  }
  if (q.numel() == 0 || k.numel() == 0 || v.numel() == 0) ThrowRangeError(env, "attentionWithCache: empty query, key or value");
  const int64_t H = q.size(-3), Hkv = k.size(-3);
  if (Hkv < 1 || H % Hkv != 0 || k.size(-1) != q.size(-1)) ThrowRangeError(env, "attentionWithCache: incompatible head counts or sizes");
  for (int64_t i = 0; i < d - 3; ++i) {
    if (k.size(i) != q.size(i)) ThrowRangeError(env, "attentionWithCache: batch dims differ");
  }
  if (mask.defined() && mask.scalar_type() != at::kBool && !mask.is_floating_point()) {
    ThrowTypeError(env, "mask: expected a boolean or floating-point tensor");
  }
  ck.narrow(-2, past, T).copy_(k);
  cv.narrow(-2, past, T).copy_(v);
  at::Tensor keys = ck.narrow(-2, 0, past + T), values = cv.narrow(-2, 0, past + T);
  if (q.scalar_type() == at::kHalf && q.device().is_cpu()) {
    at::Tensor m = mask.defined() && mask.is_floating_point() ? mask.to(at::kFloat) : mask;
    return WrapTensor(env, Attention(q.to(at::kFloat), keys.to(at::kFloat), values.to(at::kFloat), m, scale, causal, 0).to(at::kHalf));
  }
  return WrapTensor(env, Attention(q, keys, values, mask, scale, causal, 0));
}

}  // namespace

void RegisterAttention(Napi::Object exports) {
  TL_EXPORT(exports, "scaledDotProductAttention", ScaledDotProductAttention);
  TL_EXPORT(exports, "attentionWithCache", AttentionWithCache);
}

}  // namespace tl
