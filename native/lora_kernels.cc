#include "lora.h"

// c10::optional is its own type in libtorch 1.x and an alias of std::optional from 2.4; the
// custom autograd Function below must take the type its apply() unpacks, so it says c10::optional.
// Newer torch headers include <optional> directly, so this header must be named here.
#include <c10/util/Optional.h>
#include <sys/mman.h>

#include <cstdlib>

namespace tl {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// One input row (a single token: the generation case): matrix-vector products. libtorch's mm
// hands a 1-row product to a general GEMM, which measured 2.5x slower than gemv at 1x256.
// Fills h = xd Aᵀ (1, r) and y = x Wᵀ + b + s·h Bᵀ (1, out).
void SingleRow(const at::Tensor& x2, const at::Tensor& xd2, const at::Tensor& weight, const at::Tensor& bias, const at::Tensor& A,
               const at::Tensor& B, double scale, bool fanInFanOut, at::Tensor& h, at::Tensor& y) {
  at::Tensor w = fanInFanOut ? weight.t() : weight;  // (out, in)
  at::Tensor v = x2.select(0, 0), vd = xd2.select(0, 0);
  at::Tensor hv = at::mv(A, vd);
  at::Tensor yv = bias.defined() ? at::addmv(bias, w, v) : at::mv(w, v);
  yv.addmv_(B, hv, 1, scale);
  h = hv.unsqueeze(0);
  y = yv.unsqueeze(0);
}

// a (m, k) · b (k, n), with gemv or an outer product for the one-row and rank-one shapes
// that a single token gives in backward.
at::Tensor Mm(const at::Tensor& a, const at::Tensor& b) {
  if (a.size(0) == 1) return at::mv(b.t(), a.select(0, 0)).unsqueeze(0);
  if (a.size(1) == 1) return at::outer(a.select(1, 0), b.select(0, 0));
  return at::mm(a, b);
}

// t·s in place; a scale of 1 (alpha = r, the common setting) skips the op: the product would be t bit for bit.
at::Tensor Scaled(at::Tensor t, double s) { return s == 1 ? t : t.mul_(s); }

// Backward of one input row (a single token) without a weight gradient: matrix-vector products
// and outer products on 1-D views, the input gradient accumulated in place (addmv_), no
// temporary (1, n) views. gv is the output gradient (out); the results follow LoraLinearFunction.
void SingleRowBackward(const at::Tensor& gv, const at::Tensor& xd2, const at::Tensor& weight, const at::Tensor& A, const at::Tensor& B,
                       const at::Tensor& h, double scale, bool fiof, bool hasDropped, bool xGrad, bool abGrad,
                       const std::vector<int64_t>& inShape, at::Tensor& gx, at::Tensor& gDropped, at::Tensor& gA, at::Tensor& gB) {
  if (!abGrad && !xGrad) return;
  at::Tensor ghv = Scaled(at::mv(B.t(), gv), scale);  // (r): s·Bᵀg, the gradient reaching h
  if (abGrad) {
    gA = at::outer(ghv, xd2.select(0, 0));
    gB = Scaled(at::outer(gv, h.select(0, 0)), scale);
  }
  if (!xGrad) return;
  at::Tensor base = at::mv(fiof ? weight : weight.t(), gv);  // (in): Wᵀg
  if (hasDropped) {
    gx = base.view(inShape);
    gDropped = at::mv(A.t(), ghv).view(inShape);
  } else {
    gx = base.addmv_(A.t(), ghv).view(inShape);
  }
}

std::vector<int64_t> OutShape(const at::Tensor& x, int64_t out) {
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
  shape.back() = out;
  return shape;
}

// A LoRA Linear layer as ONE autograd node. The stock graph (linear, dropout, two mm, mul,
// add) costs more in bookkeeping than in math at small shapes; here the backward computes
// exactly the gradients that are needed, sharing the (g·B) product between dA and dx.
struct LoraLinearFunction : public torch::autograd::Function<LoraLinearFunction> {
  // Which gradients backward must produce, packed in one saved value: each saved_data entry
  // is a string-keyed hash insert, a real cost at small shapes.
  enum Flag : int64_t { kFiof = 1, kHasDropped = 2, kXGrad = 4, kWGrad = 8, kBGrad = 16, kAbGrad = 32 };

  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const c10::optional<at::Tensor>& dropped, const at::Tensor& weight,
                            const c10::optional<at::Tensor>& bias, const at::Tensor& A, const at::Tensor& B, double scale,
                            bool fanInFanOut) {
    const int64_t in = x.size(-1);
    // A 2-D input is used as is: reshape would still allocate a new view per call.
    at::Tensor x2 = x.dim() == 2 ? x : x.reshape({-1, in});
    at::Tensor xd2 = dropped.has_value() ? (dropped->dim() == 2 ? *dropped : dropped->reshape({-1, in})) : x2;
    at::Tensor h, y;
    if (x2.size(0) == 1) {
      SingleRow(x2, xd2, weight, bias.has_value() ? *bias : at::Tensor(), A, B, scale, fanInFanOut, h, y);
    } else {
      at::Tensor wt = fanInFanOut ? weight : weight.t();
      h = at::mm(xd2, A.t());
      y = bias.has_value() ? at::addmm(*bias, x2, wt) : at::mm(x2, wt);
      y.addmm_(h, B.t(), 1, scale);
    }

    int64_t flags = 0;
    if (fanInFanOut) flags |= kFiof;
    if (dropped.has_value()) flags |= kHasDropped;
    if (x.requires_grad() || (dropped.has_value() && dropped->requires_grad())) flags |= kXGrad;
    if (weight.requires_grad()) flags |= kWGrad;
    if (bias.has_value() && bias->requires_grad()) flags |= kBGrad;
    if (A.requires_grad() || B.requires_grad()) flags |= kAbGrad;
    // Only what backward will read: each saved tensor costs a SavedVariable to pack and unpack,
    // a real share of a small layer's backward. (An undefined tensor is free to save.)
    const bool xGrad = flags & kXGrad, abGrad = flags & kAbGrad, wGrad = flags & kWGrad;
    ctx->save_for_backward({wGrad ? x2 : at::Tensor(), abGrad ? xd2 : at::Tensor(), xGrad ? weight : at::Tensor(), xGrad ? A : at::Tensor(),
                            abGrad || xGrad ? B : at::Tensor(), abGrad ? h : at::Tensor()});
    ctx->saved_data["s"] = scale;
    ctx->saved_data["f"] = flags;
    return x.dim() == 2 ? y : y.view(OutShape(x, y.size(1)));
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor &x2 = saved[0], &xd2 = saved[1], &weight = saved[2], &A = saved[3], &B = saved[4], &h = saved[5];
    const double scale = ctx->saved_data["s"].toDouble();
    const int64_t flags = ctx->saved_data["f"].toInt();
    const bool fiof = flags & kFiof, hasDropped = flags & kHasDropped, xGrad = flags & kXGrad, abGrad = flags & kAbGrad;
    at::Tensor g = grads[0].dim() == 2 ? grads[0] : grads[0].reshape({-1, grads[0].size(-1)});
    std::vector<int64_t> inShape = grads[0].sizes().vec();
    if (xGrad) inShape.back() = weight.size(fiof ? 0 : 1);  // in_features

    at::Tensor gx, gDropped, gW, gb, gA, gB;
    if (g.size(0) == 1 && !(flags & kWGrad)) {
      SingleRowBackward(g.select(0, 0), xd2, weight, A, B, h, scale, fiof, hasDropped, xGrad, abGrad, inShape, gx, gDropped, gA, gB);
      if (flags & kBGrad) gb = g.sum(0);
      return {gx, gDropped, gW, gb, gA, gB, at::Tensor(), at::Tensor()};
    }
    at::Tensor gh;  // s·(g B): gradient reaching h = xd Aᵀ
    if (abGrad || xGrad) gh = Scaled(Mm(g, B), scale);
    if (abGrad) {
      gA = Mm(gh.t(), xd2);
      gB = Scaled(Mm(g.t(), h), scale);
    }
    if (xGrad) {
      at::Tensor base = Mm(g, fiof ? weight.t() : weight);
      if (hasDropped) {
        gx = base.view(inShape);
        gDropped = Mm(gh, A).view(inShape);
      } else {
        gx = (g.size(0) == 1 ? base.add_(Mm(gh, A)) : base.addmm_(gh, A)).view(inShape);
      }
    }
    if (flags & kWGrad) gW = fiof ? Mm(x2.t(), g) : Mm(g.t(), x2);
    if (flags & kBGrad) gb = g.sum(0);
    return {gx, gDropped, gW, gb, gA, gB, at::Tensor(), at::Tensor()};
  }
};

bool HalfOnCpu(const at::Tensor& t) { return t.scalar_type() == at::kHalf && t.device().is_cpu(); }

// y + s·(xd Aᵀ) Bᵀ over the flattened rows, in 2-D products: mm and addmm refuse factors that do
// not fit (matmul would broadcast a 1-D or 3-D factor, and the sum a one-column delta).
at::Tensor AddLowRank(const at::Tensor& y, const at::Tensor& xd, const LoraFactors& f) {
  at::Tensor x2 = xd.reshape({-1, xd.size(-1)}), y2 = y.reshape({-1, y.size(-1)});
  return at::addmm(y2, at::mm(x2, f.A.t()), f.B.t(), 1, f.scale).view(y.sizes());
}

// The factor dtypes the kernels take: the weight's, or float32 on a float16/bfloat16 weight (PEFT's
// autocast_adapter_dtype). Checked here because the float32 paths below convert their operands and
// would otherwise take any floating dtype; every other mismatch (the input's dtype, shapes,
// devices) is refused by libtorch's own products. The facade words the message for users.
void CheckFactorDtypes(const at::Tensor& weight, const std::vector<LoraFactors>& adapters) {
  const at::ScalarType w = weight.scalar_type();
  const bool halfBase = w == at::kHalf || w == at::kBFloat16;
  for (const LoraFactors& f : adapters) {
    const at::ScalarType a = f.A.scalar_type(), b = f.B.scalar_type();
    TORCH_CHECK(a == b && (a == w || (halfBase && a == at::kFloat)), "LoRA factors of dtypes ", a, " and ", b,
                " do not fit a weight of dtype ", w);
  }
}

// Whether autograd must record this forward: grad mode on and some input requires grad.
bool NeedsGraph(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, const std::vector<LoraFactors>& adapters) {
  if (!at::GradMode::is_enabled()) return false;
  if (x.requires_grad() || weight.requires_grad() || (bias.defined() && bias.requires_grad())) return true;
  for (const LoraFactors& f : adapters) {
    if (f.A.requires_grad() || f.B.requires_grad()) return true;
  }
  return false;
}

// Inference: the same products as the autograd node's forward, without creating the node
// (its context, saved tensors and hash map cost more than the math at small shapes).
at::Tensor PlainLinear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, bool fanInFanOut, bool training,
                       const std::vector<LoraFactors>& adapters) {
  const int64_t in = x.size(-1);
  at::Tensor x2 = x.dim() == 2 ? x : x.reshape({-1, in});
  if (x2.size(0) == 1 && adapters.size() == 1 && !(training && adapters[0].dropout > 0)) {
    at::Tensor h, y;
    SingleRow(x2, x2, weight, bias, adapters[0].A, adapters[0].B, adapters[0].scale, fanInFanOut, h, y);
    return x.dim() == 2 ? y : y.view(OutShape(x, y.size(1)));
  }
  at::Tensor wt = fanInFanOut ? weight : weight.t();
  at::Tensor y = bias.defined() ? at::addmm(bias, x2, wt) : at::mm(x2, wt);
  for (const LoraFactors& f : adapters) {
    at::Tensor xd = training && f.dropout > 0 ? at::dropout(x2, f.dropout, true) : x2;
    y.addmm_(at::mm(xd, f.A.t()), f.B.t(), 1, f.scale);
  }
  return x.dim() == 2 ? y : y.view(OutShape(x, y.size(1)));
}

// Whether some adapter keeps float32 factors on a half-precision layer (PEFT's default,
// autocast_adapter_dtype): its low-rank path then runs in float32.
bool WideFactors(const at::Tensor& weight, const std::vector<LoraFactors>& adapters) {
  for (const LoraFactors& f : adapters) {
    if (f.A.scalar_type() != weight.scalar_type()) return true;
  }
  return false;
}

}  // namespace

at::Tensor LoraLinearForward(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, bool fanInFanOut, bool training,
                             const std::vector<LoraFactors>& adapters) {
  CheckFactorDtypes(weight, adapters);
  if (WideFactors(weight, adapters)) {
    // As PEFT computes it: the base output in the layer's dtype, the low-rank path on a float32
    // copy of x, the sum in float32, rounded once to the layer's dtype.
    at::Tensor y = LoraLinearForward(x, weight, bias, fanInFanOut, training, {});
    at::Tensor xf = x.to(at::kFloat), sum = y.to(at::kFloat);
    for (const LoraFactors& f : adapters) {
      LoraFactors wide{f.A.to(at::kFloat), f.B.to(at::kFloat), f.scale, f.dropout};
      sum = AddLowRank(sum, training && f.dropout > 0 ? at::dropout(xf, f.dropout, true) : xf, wide);
    }
    return sum.to(y.scalar_type());
  }
  if (HalfOnCpu(x) && weight.scalar_type() == at::kHalf) {
    // libtorch 1.13 has no fp16 matmul on CPU: compute in fp32 and round the result once. (Only
    // for an fp16 input on an fp16 weight: any other mix is libtorch's to refuse, not to widen.)
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
  if (!NeedsGraph(x, weight, bias, adapters)) return PlainLinear(x, weight, bias, fanInFanOut, training, adapters);
  const LoraFactors& first = adapters.front();
  c10::optional<at::Tensor> dropped;
  if (training && first.dropout > 0) dropped = at::dropout(x, first.dropout, true);
  c10::optional<at::Tensor> b = bias.defined() ? c10::optional<at::Tensor>(bias) : c10::nullopt;
  at::Tensor y = LoraLinearFunction::apply(x, dropped, weight, b, first.A, first.B, first.scale, fanInFanOut);
  // Further active adapters add their own low-rank term (rare: the fused node serves one).
  for (size_t i = 1; i < adapters.size(); ++i) {
    const LoraFactors& f = adapters[i];
    at::Tensor xd = training && f.dropout > 0 ? at::dropout(x, f.dropout, true) : x;
    y = AddLowRank(y, xd, f);
  }
  return y;
}

at::Tensor LoraEmbeddingForward(const at::Tensor& ids, const at::Tensor& weight, int64_t paddingIdx,
                                const std::vector<LoraFactors>& adapters) {
  CheckFactorDtypes(weight, adapters);
  at::Tensor y = at::embedding(weight, ids, paddingIdx);
  if (adapters.empty()) return y;
  // Flat ids make every lookup 2-D, so y + s·(Aᵀ[ids]) Bᵀ is one addmm (one autograd node,
  // no separate scaled temporary) instead of matmul, mul and add.
  const int64_t dim = weight.size(1);
  at::Tensor flatIds = ids.dim() == 1 ? ids : ids.reshape({-1});
  at::Tensor y2 = ids.dim() == 1 ? y : y.view({-1, dim});
  // float32 factors on a half-precision table, and fp16 on CPU (libtorch 1.13 has no fp16 matmul
  // there): the low-rank terms in float32, the sum rounded once.
  const bool wide = WideFactors(weight, adapters) || HalfOnCpu(weight);
  at::Tensor sum = wide ? y2.to(at::kFloat) : y2;
  for (const LoraFactors& f : adapters) {
    at::Tensor A = wide ? f.A.to(at::kFloat) : f.A, B = wide ? f.B.to(at::kFloat) : f.B;
    // Aᵀ[ids] through embedding(), so padding_idx blocks A's gradient as nn.Embedding does.
    at::Tensor after = at::embedding(A.t(), flatIds, paddingIdx);
    sum = at::addmm(sum, after, B.t(), 1, f.scale);
  }
  if (wide) sum = sum.to(y.scalar_type());
  return ids.dim() == 1 ? sum : sum.view(y.sizes());
}

namespace {

// W += s·m1·m2, with (m1, m2) = (B, A) for a plain Linear weight (out, in) and (Aᵀ, Bᵀ)
// for the transposed layouts (Embedding (V, d), fanInFanOut Linear (in, out)).
void AddDelta(at::Tensor& target, const LoraFactors& f, bool transposed) {
  at::Tensor A = f.A.to(target.scalar_type()), B = f.B.to(target.scalar_type());
  if (transposed)
    target.addmm_(A.t(), B.t(), 1, f.scale);
  else
    target.addmm_(B, A, 1, f.scale);
}

// A contiguous CPU buffer of `w`'s shape, memory advised for transparent huge pages when big:
// a fresh 64 MiB buffer otherwise costs ~16 000 page faults, which made the backup taken at
// merge time several times dearer than the merge arithmetic itself.
at::Tensor EmptyLike(const at::Tensor& w, at::ScalarType dtype) {
  constexpr size_t kHugePage = size_t{2} << 20;
  const size_t bytes = static_cast<size_t>(w.numel()) * c10::elementSize(dtype);
  if (!w.device().is_cpu() || bytes < 4 * kHugePage) return at::empty(w.sizes(), w.options().dtype(dtype));
  const size_t rounded = (bytes + kHugePage - 1) / kHugePage * kHugePage;
  void* data = std::aligned_alloc(kHugePage, rounded);
  if (data == nullptr) throw std::bad_alloc();
  madvise(data, rounded, MADV_HUGEPAGE);  // advice only: without THP it is a plain buffer
  return at::from_blob(
      data, w.sizes(), [](void* p) { std::free(p); }, w.options().dtype(dtype));
}

/** A contiguous copy of `w` in `dtype` (one rounding when narrowing). */
at::Tensor CopyOf(const at::Tensor& w, at::ScalarType dtype) { return EmptyLike(w, dtype).copy_(w); }

}  // namespace

at::Tensor ComputeMerge(at::Tensor weight, const std::vector<LoraFactors>& adapters, LoraKind kind, bool fanInFanOut, bool safe,
                        bool keepBackup) {
  at::NoGradGuard noGrad;
  // The computed-aside path starts from the first adapter.
  TORCH_CHECK(!adapters.empty(), "merge: no adapters to merge");
  const bool transposed = kind == LoraKind::Embedding || fanInFanOut;
  for (const LoraFactors& f : adapters) {
    const int64_t rows = transposed ? f.A.size(1) : f.B.size(0), cols = transposed ? f.B.size(0) : f.A.size(1);
    TORCH_CHECK(weight.dim() == 2 && weight.size(0) == rows && weight.size(1) == cols, "merge: the adapter's delta has shape [", rows, ", ",
                cols, "] but the base weight has shape ", weight.sizes());
  }
  const bool lowPrecision = weight.scalar_type() == at::kHalf || weight.scalar_type() == at::kBFloat16;
  if (!keepBackup && !lowPrecision && !safe) {
    for (const LoraFactors& f : adapters) AddDelta(weight, f, transposed);  // the floor: addmm_ in place
    return at::Tensor();
  }
  // Computed aside: in fp32 for half types (one rounding at the final cast), and so that a
  // non-finite result can be refused before anything is written.
  at::Tensor merged;
  if (lowPrecision) {
    at::Tensor wide = CopyOf(weight, at::kFloat);
    for (const LoraFactors& f : adapters) AddDelta(wide, f, transposed);
    merged = CopyOf(wide, weight.scalar_type());
  } else {
    merged = EmptyLike(weight, weight.scalar_type());
    const LoraFactors& first = adapters.front();
    at::Tensor A = first.A.to(weight.scalar_type()), B = first.B.to(weight.scalar_type());
    if (transposed)
      at::addmm_out(merged, weight, A.t(), B.t(), 1, first.scale);
    else
      at::addmm_out(merged, weight, B, A, 1, first.scale);
    for (size_t i = 1; i < adapters.size(); ++i) AddDelta(merged, adapters[i], transposed);
  }
  if (safe && !at::isfinite(merged).all().item<bool>()) {
    TORCH_CHECK(false, "merge refused: the merged weight would contain NaN or Inf values; the base weight is unchanged");
  }
  if (!keepBackup) {
    weight.copy_(merged);
    return at::Tensor();
  }
  return merged;
}

at::Tensor SwapInMerged(at::Tensor weight, const at::Tensor& merged) {
  at::NoGradGuard noGrad;
  // The first merge swaps storages instead of copying: the weight takes the merged buffer and
  // the backup keeps the pristine one, so unmerge (RestoreFrom) is a swap back, bit for bit.
  at::Tensor backup = at::empty({0}, weight.options());
  backup.set_(weight);
  weight.set_(merged);
  return backup;
}

at::Tensor MergeInto(at::Tensor weight, const std::vector<LoraFactors>& adapters, LoraKind kind, bool fanInFanOut, bool safe,
                     bool keepBackup) {
  at::Tensor merged = ComputeMerge(weight, adapters, kind, fanInFanOut, safe, keepBackup);
  return merged.defined() ? SwapInMerged(weight, merged) : at::Tensor();
}

void RestoreFrom(at::Tensor weight, const at::Tensor& backup) {
  at::NoGradGuard noGrad;
  weight.set_(backup);
}

}  // namespace tl
