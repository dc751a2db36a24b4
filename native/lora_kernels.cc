#include "lora.h"

namespace tl {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// A LoRA Linear layer as ONE autograd node. The stock graph (linear, dropout, two mm, mul,
// add) costs more in bookkeeping than in math at small shapes; here the backward computes
// exactly the gradients that are needed, sharing the (g·B) product between dA and dx.
struct LoraLinearFunction : public torch::autograd::Function<LoraLinearFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const c10::optional<at::Tensor>& dropped,
                            const at::Tensor& weight, const c10::optional<at::Tensor>& bias, const at::Tensor& A,
                            const at::Tensor& B, double scale, bool fanInFanOut) {
    const int64_t in = x.size(-1);
    at::Tensor x2 = x.reshape({-1, in});
    at::Tensor xd2 = dropped.has_value() ? dropped->reshape({-1, in}) : x2;
    at::Tensor wt = fanInFanOut ? weight : weight.t();
    at::Tensor h = at::mm(xd2, A.t());
    at::Tensor y = bias.has_value() ? at::addmm(*bias, x2, wt) : at::mm(x2, wt);
    y.addmm_(h, B.t(), 1, scale);

    ctx->save_for_backward({x2, xd2, weight, A, B, h});
    ctx->saved_data["scale"] = scale;
    ctx->saved_data["fiof"] = fanInFanOut;
    ctx->saved_data["hasDropped"] = dropped.has_value();
    ctx->saved_data["hasBias"] = bias.has_value();
    ctx->saved_data["xGrad"] = x.requires_grad() || (dropped.has_value() && dropped->requires_grad());
    ctx->saved_data["wGrad"] = weight.requires_grad();
    ctx->saved_data["bGrad"] = bias.has_value() && bias->requires_grad();
    ctx->saved_data["abGrad"] = A.requires_grad() || B.requires_grad();
    std::vector<int64_t> outShape(x.sizes().begin(), x.sizes().end());
    outShape.back() = y.size(1);
    return y.view(outShape);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor &x2 = saved[0], &xd2 = saved[1], &weight = saved[2], &A = saved[3], &B = saved[4], &h = saved[5];
    const double scale = ctx->saved_data["scale"].toDouble();
    const bool fiof = ctx->saved_data["fiof"].toBool();
    const bool hasDropped = ctx->saved_data["hasDropped"].toBool();
    at::Tensor g = grads[0].reshape({-1, grads[0].size(-1)});

    at::Tensor gx, gDropped, gW, gb, gA, gB;
    at::Tensor gh;  // s·(g B): gradient reaching h = xd Aᵀ
    if (ctx->saved_data["abGrad"].toBool() || ctx->saved_data["xGrad"].toBool()) gh = at::mm(g, B).mul_(scale);
    if (ctx->saved_data["abGrad"].toBool()) {
      gA = at::mm(gh.t(), xd2);
      gB = at::mm(g.t(), h).mul_(scale);
    }
    if (ctx->saved_data["xGrad"].toBool()) {
      at::Tensor base = at::mm(g, fiof ? weight.t() : weight);
      at::Tensor low = at::mm(gh, A);
      const auto shape = grads[0].sizes().vec();
      std::vector<int64_t> inShape(shape.begin(), shape.end());
      inShape.back() = x2.size(1);
      if (hasDropped) {
        gx = base.view(inShape);
        gDropped = low.view(inShape);
      } else {
        gx = base.add_(low).view(inShape);
      }
    }
    if (ctx->saved_data["wGrad"].toBool()) gW = fiof ? at::mm(x2.t(), g) : at::mm(g.t(), x2);
    if (ctx->saved_data["bGrad"].toBool()) gb = g.sum(0);
    return {gx, gDropped, gW, gb, gA, gB, at::Tensor(), at::Tensor()};
  }
};

bool HalfOnCpu(const at::Tensor& t) { return t.scalar_type() == at::kHalf && t.device().is_cpu(); }

at::Tensor LowRank(const at::Tensor& xd, const LoraFactors& f) {
  return at::matmul(at::matmul(xd, f.A.t()), f.B.t()).mul_(f.scale);
}

}  // namespace

at::Tensor LoraLinearForward(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, bool fanInFanOut,
                             bool training, const std::vector<LoraFactors>& adapters) {
  if (HalfOnCpu(x)) {
    // libtorch 1.13 has no fp16 matmul on CPU: compute in fp32 and round the result once.
    std::vector<LoraFactors> wide = adapters;
    for (LoraFactors& f : wide) {
      f.A = f.A.to(at::kFloat);
      f.B = f.B.to(at::kFloat);
    }
    at::Tensor b = bias.defined() ? bias.to(at::kFloat) : bias;
    return LoraLinearForward(x.to(at::kFloat), weight.to(at::kFloat), b, fanInFanOut, training, wide).to(at::kHalf);
  }
  if (adapters.empty()) {
    if (!fanInFanOut) return at::linear(x, weight, bias);
    at::Tensor y = at::matmul(x, weight);
    return bias.defined() ? y.add_(bias) : y;
  }
  const LoraFactors& first = adapters.front();
  c10::optional<at::Tensor> dropped;
  if (training && first.dropout > 0) dropped = at::dropout(x, first.dropout, true);
  c10::optional<at::Tensor> b = bias.defined() ? c10::optional<at::Tensor>(bias) : c10::nullopt;
  at::Tensor y = LoraLinearFunction::apply(x, dropped, weight, b, first.A, first.B, first.scale, fanInFanOut);
  // Further active adapters add their own low-rank term (rare: the fused node serves one).
  for (size_t i = 1; i < adapters.size(); ++i) {
    const LoraFactors& f = adapters[i];
    at::Tensor xd = training && f.dropout > 0 ? at::dropout(x, f.dropout, true) : x;
    y = y + LowRank(xd, f);
  }
  return y;
}

at::Tensor LoraEmbeddingForward(const at::Tensor& ids, const at::Tensor& weight, int64_t paddingIdx,
                                const std::vector<LoraFactors>& adapters) {
  at::Tensor y = at::embedding(weight, ids, paddingIdx);
  if (HalfOnCpu(weight) && !adapters.empty()) {
    // As for Linear: the low-rank product runs in fp32 on CPU, added once to the fp16 lookup.
    at::Tensor low = at::zeros({}, y.options().dtype(at::kFloat));
    for (const LoraFactors& f : adapters) {
      at::Tensor after = at::embedding(f.A.to(at::kFloat).t(), ids, paddingIdx);
      low = low + at::matmul(after, f.B.to(at::kFloat).t()).mul_(f.scale);
    }
    return (y.to(at::kFloat) + low).to(at::kHalf);
  }
  for (const LoraFactors& f : adapters) {
    // Aᵀ[ids] through embedding(), so padding_idx blocks A's gradient as nn.Embedding does.
    at::Tensor after = at::embedding(f.A.t(), ids, paddingIdx);
    y = y + at::matmul(after, f.B.t()).mul_(f.scale);
  }
  return y;
}

namespace {

// W += s·m1·m2, with (m1, m2) = (B, A) for a plain Linear weight (out, in) and (Aᵀ, Bᵀ)
// for the transposed layouts (Embedding (V, d), fanInFanOut Linear (in, out)).
void AddDelta(at::Tensor& target, const LoraFactors& f, bool transposed) {
  at::Tensor A = f.A.to(target.scalar_type()), B = f.B.to(target.scalar_type());
  if (transposed) target.addmm_(A.t(), B.t(), 1, f.scale);
  else target.addmm_(B, A, 1, f.scale);
}

}  // namespace

at::Tensor MergeInto(at::Tensor weight, const std::vector<LoraFactors>& adapters, LoraKind kind, bool fanInFanOut,
                     bool safe, bool keepBackup) {
  at::NoGradGuard noGrad;
  const bool transposed = kind == LoraKind::Embedding || fanInFanOut;
  for (const LoraFactors& f : adapters) {
    const int64_t rows = transposed ? f.A.size(1) : f.B.size(0), cols = transposed ? f.B.size(0) : f.A.size(1);
    TORCH_CHECK(weight.dim() == 2 && weight.size(0) == rows && weight.size(1) == cols, "merge: the adapter's delta has shape [",
                rows, ", ", cols, "] but the base weight has shape ", weight.sizes());
  }
  at::Tensor backup = keepBackup ? weight.clone() : at::Tensor();
  const bool lowPrecision = weight.scalar_type() == at::kHalf || weight.scalar_type() == at::kBFloat16;
  if (!lowPrecision && !safe) {
    for (const LoraFactors& f : adapters) AddDelta(weight, f, transposed);  // the floor: addmm_ in place
    return backup;
  }
  // Computed aside: in fp32 for half types (one rounding at the final cast), and so that a
  // non-finite result can be refused before anything is written.
  at::Tensor merged = lowPrecision ? weight.to(at::kFloat) : weight.clone();
  for (const LoraFactors& f : adapters) AddDelta(merged, f, transposed);
  if (lowPrecision) merged = merged.to(weight.scalar_type());
  if (safe && !at::isfinite(merged).all().item<bool>()) {
    TORCH_CHECK(false, "merge refused: the merged weight would contain NaN or Inf values; the base weight is unchanged");
  }
  weight.copy_(merged);
  return backup;
}

}  // namespace tl
