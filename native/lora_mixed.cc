// Mixed-adapter batches: every row of a batch applies its own LoRA adapter (or none), in one
// native call per layer. The selected rows are ordered by adapter (a counting sort), and each
// adapter's run of rows takes two GEMMs with that adapter's own factors, whatever its rank:
// each adapter's factors are read once, with no per-row copies of them (a gather of per-row
// factors, as GPU kernels such as Punica's BGMV do, moves rows·r·(in+out) values, which on a
// CPU costs more than the products themselves). Rows without an adapter (index -1) are never
// written: they keep the base output bit for bit.
#include "handle.h"
#include "errors.h"
#include "lookup.h"
#include "options.h"

namespace tl {
namespace {

/** The adapters of one layer as the mixed kernels see them: (A, B) pairs and their scales. */
struct Adapters {
  std::vector<at::Tensor> A, B;
  std::vector<double> scale;
};

Adapters AdaptersField(Napi::Env env, const Napi::Object& o) {
  Adapters a;
  std::vector<at::Tensor> factors = TensorListOption(o, "factors");
  a.scale = NumberListOption(o, "scales");
  if (factors.size() != 2 * a.scale.size()) {
    ThrowRangeError(env, "factors: expected an (A, B) pair per scale (" + std::to_string(2 * a.scale.size()) + " tensors), got " +
                             std::to_string(factors.size()));
  }
  for (size_t k = 0; k < a.scale.size(); ++k) {
    a.A.push_back(factors[2 * k]);
    a.B.push_back(factors[2 * k + 1]);
  }
  return a;
}

// Row → adapter index (-1: no adapter). Memory safety hinges on these being in range.
std::vector<int64_t> RowsField(Napi::Env env, const Napi::Object& o, size_t adapters, int64_t batch) {
  std::vector<double> raw = NumberListOption(o, "rows");
  if (static_cast<int64_t>(raw.size()) != batch) {
    ThrowRangeError(
        env, "rows: expected one adapter index per row of the batch (" + std::to_string(batch) + "), got " + std::to_string(raw.size()));
  }
  std::vector<int64_t> rows(raw.size());
  for (size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] != static_cast<int64_t>(raw[i]) || raw[i] < -1 || raw[i] >= static_cast<double>(adapters)) {
      ThrowRangeError(env, "rows[" + std::to_string(i) + "]: expected an adapter index in [-1, " + std::to_string(adapters) + "), got " +
                               std::to_string(raw[i]));
    }
    rows[i] = static_cast<int64_t>(raw[i]);
  }
  return rows;
}

void CheckFactorShapes(Napi::Env env, const Adapters& a, int64_t aCols, int64_t bRows, const char* what) {
  for (size_t k = 0; k < a.A.size(); ++k) {
    const at::Tensor &A = a.A[k], &B = a.B[k];
    if (A.dim() != 2 || B.dim() != 2 || A.size(1) != aCols || B.size(0) != bRows || A.size(0) != B.size(1)) {
      ThrowRangeError(
          env, "factors[" + std::to_string(k) + "]: A " + c10::str(A.sizes()) + " and B " + c10::str(B.sizes()) + " do not fit " + what);
    }
    if (A.device() != a.A[0].device() || B.device() != a.A[0].device() || A.scalar_type() != a.A[0].scalar_type() ||
        B.scalar_type() != a.A[0].scalar_type()) {
      ThrowTypeError(env, "factors[" + std::to_string(k) + "]: every adapter's factors must share one dtype and device");
    }
  }
}

// The dtype the low-rank products run in: the factors' own (PEFT casts the rows to it), widened
// to fp32 for fp16 on CPU, where libtorch 1.13 has no fp16 matmul.
at::ScalarType LowRankDtype(const Adapters& a) {
  at::ScalarType t = a.A[0].scalar_type();
  return t == at::kHalf && a.A[0].device().is_cpu() ? at::kFloat : t;
}

bool NeedsGraph(const Adapters& a, const at::Tensor& input) {
  if (!at::GradMode::is_enabled()) return false;
  if (input.requires_grad()) return true;
  for (size_t k = 0; k < a.A.size(); ++k) {
    if (a.A[k].requires_grad() || a.B[k].requires_grad()) return true;
  }
  return false;
}

/** The rows that use an adapter, ordered by adapter, cut into one segment per adapter. */
struct Segments {
  std::vector<int64_t> order;                  // row numbers, grouped by adapter (stable)
  std::vector<int64_t> adapter, start, count;  // per segment: adapter index, offset in `order`, rows
  bool identity = true;                        // order is 0..rows-1: rows are used in place
};

Segments Plan(const std::vector<int64_t>& rowAdapter, size_t adapters) {
  std::vector<int64_t> perAdapter(adapters, 0);
  for (int64_t k : rowAdapter)
    if (k >= 0) ++perAdapter[k];
  Segments s;
  std::vector<int64_t> next(adapters, 0);
  for (size_t k = 0, at = 0; k < adapters; at += perAdapter[k], ++k) {
    next[k] = static_cast<int64_t>(at);
    if (perAdapter[k] == 0) continue;
    s.adapter.push_back(static_cast<int64_t>(k));
    s.start.push_back(static_cast<int64_t>(at));
    s.count.push_back(perAdapter[k]);
  }
  int64_t selected = 0;
  for (int64_t n : perAdapter) selected += n;
  s.order.resize(selected);
  for (size_t i = 0; i < rowAdapter.size(); ++i) {
    if (rowAdapter[i] >= 0) s.order[next[rowAdapter[i]]++] = static_cast<int64_t>(i);
  }
  for (size_t i = 0; i < s.order.size(); ++i) s.identity = s.identity && s.order[i] == static_cast<int64_t>(i);
  s.identity = s.identity && s.order.size() == rowAdapter.size();
  return s;
}

/**
 * Adds each segment's low-rank term to y3 (rows, L, out). `lowRank(k, rows)` gives adapter k's
 * h = (rows·L, r) for the segment's rows of `inputs` (selected rows in `order`, flattened).
 * Without autograd the products are written in place: into y itself when the rows are already
 * grouped, else into one buffer scattered back with a single index_add_.
 */
template <typename LowRank>
at::Tensor AddSegments(at::Tensor y, int64_t rows, int64_t out, const Segments& seg, const Adapters& a, at::ScalarType dtype, bool graph,
                       LowRank lowRank) {
  at::Tensor y3 = y.view({rows, -1, out});
  const int64_t L = y3.size(1);
  const bool inPlace = !graph && seg.identity && dtype == y.scalar_type();
  at::Tensor target = inPlace ? y3.view({rows * L, out}) : at::Tensor();
  if (!inPlace && !graph) target = at::empty({static_cast<int64_t>(seg.order.size()) * L, out}, y.options().dtype(dtype));
  std::vector<at::Tensor> parts;
  for (size_t s = 0; s < seg.adapter.size(); ++s) {
    const int64_t k = seg.adapter[s];
    at::Tensor h = lowRank(k, seg.start[s] * L, seg.count[s] * L);
    at::Tensor Bt = a.B[k].to(dtype).t();
    if (graph) {
      parts.push_back(at::mm(h, Bt).mul(a.scale[k]));
    } else {
      at::Tensor slice = target.narrow(0, seg.start[s] * L, seg.count[s] * L);
      // beta = 0 on the scratch buffer: its uninitialized values are ignored, as addmm documents.
      slice.addmm_(h, Bt, inPlace ? 1 : 0, a.scale[k]);
    }
  }
  if (inPlace) return y;
  at::Tensor delta = (graph ? at::cat(parts) : target).view({static_cast<int64_t>(seg.order.size()), L, out}).to(y.scalar_type());
  if (seg.identity) return y3.add_(delta).view(y.sizes());
  at::Tensor order = at::tensor(seg.order, at::TensorOptions().dtype(at::kLong)).to(y.device());
  return y3.index_add_(0, order, delta).view(y.sizes());
}

at::Tensor RowsOf(const at::Tensor& t3, const Segments& seg) {
  if (seg.identity) return t3;
  return t3.index_select(0, at::tensor(seg.order, at::TensorOptions().dtype(at::kLong)).to(t3.device()));
}

at::Tensor BaseLinear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, bool fiof) {
  if (x.scalar_type() == at::kHalf && x.device().is_cpu()) {
    return BaseLinear(x.to(at::kFloat), w.to(at::kFloat), b.defined() ? b.to(at::kFloat) : b, fiof).to(at::kHalf);
  }
  if (!fiof) return at::linear(x, w, b);
  at::Tensor y = at::matmul(x, w);
  return b.defined() ? y.add_(b) : y;
}

// loraMixedLinear({ input, weight, bias, fanInFanOut, factors, scales, rows })
Napi::Value LoraMixedLinear(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = OptionsArg(info, 0);
  at::Tensor x = TensorOption(o, "input"), w = TensorOption(o, "weight");
  at::Tensor b = OptionalTensorOption(o, "bias");
  const bool fiof = BoolOption(o, "fanInFanOut");
  if (w.dim() != 2) ThrowRangeError(env, "weight: expected a 2-D weight, got shape " + c10::str(w.sizes()));
  const int64_t in = fiof ? w.size(0) : w.size(1), out = fiof ? w.size(1) : w.size(0);
  if (x.dim() < 2 || x.size(-1) != in) {
    ThrowRangeError(env, "input: expected shape (rows, ..., " + std::to_string(in) + "), got " + c10::str(x.sizes()));
  }
  if (x.scalar_type() != w.scalar_type() || x.device() != w.device()) {
    ThrowTypeError(env, "input: expected the weight's dtype and device (" + std::string(DtypeName(w.scalar_type())) + " on " +
                            DeviceName(w.device()) + ")");
  }
  if (b.defined() && (b.dim() != 1 || b.size(0) != out))
    ThrowRangeError(env, "bias: expected shape [" + std::to_string(out) + "], got " + c10::str(b.sizes()));
  Adapters a = AdaptersField(env, o);
  CheckFactorShapes(env, a, in, out, ("a Linear(" + std::to_string(in) + ", " + std::to_string(out) + ")").c_str());
  std::vector<int64_t> rowAdapter = RowsField(env, o, a.A.size(), x.size(0));
  if (!a.A.empty() && a.A[0].device() != w.device()) ThrowTypeError(env, "factors: expected tensors on " + DeviceName(w.device()));

  at::Tensor y = BaseLinear(x, w, b, fiof);
  Segments seg = Plan(rowAdapter, a.A.size());
  if (seg.order.empty()) return WrapTensor(env, y);
  const at::ScalarType dtype = LowRankDtype(a);
  const int64_t rows = x.size(0);
  at::Tensor xs = RowsOf(x.reshape({rows, -1, in}), seg).reshape({-1, in}).to(dtype);
  auto lowRank = [&](int64_t k, int64_t start, int64_t count) { return at::mm(xs.narrow(0, start, count), a.A[k].to(dtype).t()); };
  return WrapTensor(env, AddSegments(y, rows, out, seg, a, dtype, NeedsGraph(a, x), lowRank));
}

// loraMixedEmbedding({ ids, weight, paddingIdx, factors, scales, rows })
Napi::Value LoraMixedEmbedding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = OptionsArg(info, 0);
  at::Tensor ids = TensorOption(o, "ids"), w = TensorOption(o, "weight");
  const int64_t padding = IntOption(o, "paddingIdx");
  if (w.dim() != 2) ThrowRangeError(env, "weight: expected a 2-D weight, got shape " + c10::str(w.sizes()));
  CheckTokenIds(env, ids, w.size(0));
  if (ids.dim() < 1) ThrowRangeError(env, "ids: expected shape (rows, ...), got a scalar");
  if (ids.device() != w.device()) ThrowTypeError(env, "ids: expected a tensor on " + DeviceName(w.device()));
  const int64_t V = w.size(0), dim = w.size(1);
  Adapters a = AdaptersField(env, o);
  CheckFactorShapes(env, a, V, dim, ("an Embedding(" + std::to_string(V) + ", " + std::to_string(dim) + ")").c_str());
  std::vector<int64_t> rowAdapter = RowsField(env, o, a.A.size(), ids.size(0));
  if (!a.A.empty() && a.A[0].device() != w.device()) ThrowTypeError(env, "factors: expected tensors on " + DeviceName(w.device()));

  at::Tensor y = at::embedding(w, ids, padding);
  Segments seg = Plan(rowAdapter, a.A.size());
  if (seg.order.empty()) return WrapTensor(env, y);
  const at::ScalarType dtype = LowRankDtype(a);
  const int64_t rows = ids.size(0);
  at::Tensor chosen = RowsOf(ids.reshape({rows, -1}), seg).reshape({-1});
  // Aᵀ[ids] through embedding(), so padding_idx blocks A's gradient as nn.Embedding does.
  auto lowRank = [&](int64_t k, int64_t start, int64_t count) {
    return at::embedding(a.A[k].to(dtype).t(), chosen.narrow(0, start, count), padding);
  };
  return WrapTensor(env, AddSegments(y, rows, dim, seg, a, dtype, NeedsGraph(a, w), lowRank));
}

}  // namespace

void RegisterLoraMixed(Napi::Object exports) {
  TL_EXPORT(exports, "loraMixedLinear", LoraMixedLinear);
  TL_EXPORT(exports, "loraMixedEmbedding", LoraMixedEmbedding);
}

}  // namespace tl
