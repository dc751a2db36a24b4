// Mixed-adapter batches: every row of a batch applies its own LoRA adapter (or none), in one
// native call per layer. The adapters' factors are zero-padded to the largest rank and stacked
// once, scaling folded into B:
//   A_all (n, r_max, in), B_all (n, out, r_max)  for Linear / Conv1D
//   Aᵀ_all (n·V, r_max),  B_all (n, d, r_max)   for Embedding
// Each row then gathers its adapter's slice and two batched products add its low-rank term
// (as Punica's BGMV does), so the cost does not grow with the number of distinct adapters.
// Rows without an adapter (index -1) are never written: they keep the base output bit for bit.
#include "handle.h"
#include "errors.h"
#include "lookup.h"

#include <sstream>

namespace tl {
namespace {

Napi::Value Field(const Napi::Object& o, const char* name) { return o.Get(name); }

at::Tensor TensorField(Napi::Env env, const Napi::Object& o, const char* name) {
  return TensorValue(env, Field(o, name), name);
}

std::vector<at::Tensor> TensorListField(Napi::Env env, const Napi::Object& o, const char* name) {
  Napi::Value v = Field(o, name);
  if (!v.IsArray()) ThrowTypeError(env, std::string(name) + ": expected an array of tensors, got " + Describe(v));
  Napi::Array a = v.As<Napi::Array>();
  std::vector<at::Tensor> out;
  out.reserve(a.Length());
  for (uint32_t k = 0; k < a.Length(); ++k) out.push_back(TensorValue(env, a.Get(k), std::string(name) + "[" + std::to_string(k) + "]"));
  return out;
}

std::vector<double> NumberListField(Napi::Env env, const Napi::Object& o, const char* name) {
  Napi::Value v = Field(o, name);
  if (!v.IsArray()) ThrowTypeError(env, std::string(name) + ": expected an array of numbers, got " + Describe(v));
  Napi::Array a = v.As<Napi::Array>();
  std::vector<double> out(a.Length());
  for (uint32_t k = 0; k < a.Length(); ++k) {
    Napi::Value e = a.Get(k);
    if (!e.IsNumber()) ThrowTypeError(env, std::string(name) + "[" + std::to_string(k) + "]: expected a number, got " + Describe(e));
    out[k] = e.As<Napi::Number>().DoubleValue();
  }
  return out;
}

Napi::Object ObjectArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsObject()) {
    ThrowTypeError(info.Env(), std::string(name) + ": expected an options object, got " + Describe(info.Length() > i ? info[i] : info.Env().Undefined()));
  }
  return info[i].As<Napi::Object>();
}

/** The adapters of one layer as the mixed kernels see them: (A, B) pairs and their scales. */
struct Adapters {
  std::vector<at::Tensor> A, B;
  std::vector<double> scale;
  int64_t maxRank = 0;
};

Adapters AdaptersField(Napi::Env env, const Napi::Object& o) {
  Adapters a;
  std::vector<at::Tensor> factors = TensorListField(env, o, "factors");
  a.scale = NumberListField(env, o, "scales");
  if (factors.size() != 2 * a.scale.size()) {
    ThrowRangeError(env, "factors: expected an (A, B) pair per scale (" + std::to_string(2 * a.scale.size()) + " tensors), got " + std::to_string(factors.size()));
  }
  for (size_t k = 0; k < a.scale.size(); ++k) {
    a.A.push_back(factors[2 * k]);
    a.B.push_back(factors[2 * k + 1]);
    a.maxRank = std::max(a.maxRank, factors[2 * k].dim() == 2 ? factors[2 * k].size(0) : 0);
  }
  return a;
}

// Row → adapter index (-1: no adapter). Memory safety hinges on these being in range.
std::vector<int64_t> RowsField(Napi::Env env, const Napi::Object& o, size_t adapters, int64_t batch) {
  std::vector<double> raw = NumberListField(env, o, "rows");
  if (static_cast<int64_t>(raw.size()) != batch) {
    ThrowRangeError(env, "rows: expected one adapter index per row of the batch (" + std::to_string(batch) + "), got " + std::to_string(raw.size()));
  }
  std::vector<int64_t> rows(raw.size());
  for (size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] != static_cast<int64_t>(raw[i]) || raw[i] < -1 || raw[i] >= static_cast<double>(adapters)) {
      ThrowRangeError(env, "rows[" + std::to_string(i) + "]: expected an adapter index in [-1, " + std::to_string(adapters) + "), got " + std::to_string(raw[i]));
    }
    rows[i] = static_cast<int64_t>(raw[i]);
  }
  return rows;
}

void CheckFactorShapes(Napi::Env env, const Adapters& a, int64_t aCols, int64_t bRows, const char* what) {
  for (size_t k = 0; k < a.A.size(); ++k) {
    const at::Tensor &A = a.A[k], &B = a.B[k];
    if (A.dim() != 2 || B.dim() != 2 || A.size(1) != aCols || B.size(0) != bRows || A.size(0) != B.size(1)) {
      ThrowRangeError(env, "factors[" + std::to_string(k) + "]: A " + c10::str(A.sizes()) + " and B " + c10::str(B.sizes()) + " do not fit " + what);
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

bool AnyRequiresGrad(const Adapters& a) {
  if (!at::GradMode::is_enabled()) return false;
  for (size_t k = 0; k < a.A.size(); ++k) {
    if (a.A[k].requires_grad() || a.B[k].requires_grad()) return true;
  }
  return false;
}

/** The stacked, padded factors: `left` is A_all (Linear) or Aᵀ_all flattened (Embedding). */
struct Stacks {
  at::Tensor left, B;
};

Stacks BuildStacks(const Adapters& a, bool embedding) {
  std::vector<at::Tensor> left, right;
  const at::ScalarType dtype = LowRankDtype(a);
  for (size_t k = 0; k < a.A.size(); ++k) {
    const int64_t pad = a.maxRank - a.A[k].size(0);
    at::Tensor A = a.A[k].to(dtype), B = a.B[k].to(dtype).mul(a.scale[k]);
    // Zero rows of A / columns of B add exact zeros: a padded adapter computes what its own rank does.
    left.push_back(embedding ? at::constant_pad_nd(A.t(), {0, pad}) : at::constant_pad_nd(A, {0, 0, 0, pad}));
    right.push_back(at::constant_pad_nd(B, {0, pad}));
  }
  Stacks s{at::stack(left), at::stack(right)};
  if (embedding) s.left = s.left.reshape({-1, a.maxRank});  // (n·V, r_max): one lookup table
  return s;
}

// What the cached stacks were built from: each factor's identity, storage and version counter
// (every in-place write, an optimizer step or a load, bumps it), and each scale.
std::string StackKey(const Adapters& a) {
  std::ostringstream key;
  for (size_t k = 0; k < a.A.size(); ++k) {
    for (const at::Tensor* t : {&a.A[k], &a.B[k]}) {
      key << t->unsafeGetTensorImpl() << ':' << t->data_ptr() << ':' << t->_version() << ';';
    }
    key << a.scale[k] << '|';
  }
  return key.str();
}

// The stacks for this call. Without autograd they are cached on the JS object `cache` (one per
// layer) and rebuilt only when a factor changed; with autograd they are built fresh, as ordinary
// differentiable ops, so gradients reach each adapter's own factors.
Stacks StacksFor(Napi::Env env, const Napi::Object& o, const Adapters& a, bool embedding) {
  if (AnyRequiresGrad(a)) return BuildStacks(a, embedding);
  at::NoGradGuard noGrad;
  Napi::Value cacheValue = Field(o, "cache");
  if (!cacheValue.IsObject()) return BuildStacks(a, embedding);
  Napi::Object cache = cacheValue.As<Napi::Object>();
  std::string key = StackKey(a);
  Napi::Value old = cache.Get("key");
  if (old.IsString() && old.As<Napi::String>().Utf8Value() == key) {
    return Stacks{TensorValue(env, cache.Get("left"), "cache.left"), TensorValue(env, cache.Get("B"), "cache.B")};
  }
  Stacks s = BuildStacks(a, embedding);
  cache.Set("left", WrapTensor(env, s.left));
  cache.Set("B", WrapTensor(env, s.B));
  cache.Set("key", Napi::String::New(env, key));
  return s;
}

/** Rows that use an adapter, and which one each uses. */
struct Selection {
  bool all = true;  // every row has an adapter: no gather of the input, no scatter of the output
  std::vector<int64_t> rows, adapter;
};

Selection Select(const std::vector<int64_t>& rowAdapter) {
  Selection s;
  for (size_t i = 0; i < rowAdapter.size(); ++i) {
    if (rowAdapter[i] < 0) {
      s.all = false;
      continue;
    }
    s.rows.push_back(static_cast<int64_t>(i));
    s.adapter.push_back(rowAdapter[i]);
  }
  return s;
}

at::Tensor IndexTensor(const std::vector<int64_t>& v, const at::Device& device) {
  return at::tensor(v, at::TensorOptions().dtype(at::kLong)).to(device);
}

// y (rows, L, out) += delta (selected rows, L, out), cast to y's dtype as PEFT does.
at::Tensor AddToRows(at::Tensor y3, const at::Tensor& delta, const Selection& sel, const at::Tensor& rowIndex) {
  at::Tensor d = delta.to(y3.scalar_type());
  if (sel.all) return y3.add_(d);
  return y3.index_add_(0, rowIndex, d);
}

at::Tensor BaseLinear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, bool fiof) {
  if (x.scalar_type() == at::kHalf && x.device().is_cpu()) {
    return BaseLinear(x.to(at::kFloat), w.to(at::kFloat), b.defined() ? b.to(at::kFloat) : b, fiof).to(at::kHalf);
  }
  if (!fiof) return at::linear(x, w, b);
  at::Tensor y = at::matmul(x, w);
  return b.defined() ? y.add_(b) : y;
}

// loraMixedLinear({ input, weight, bias, fanInFanOut, factors, scales, rows, cache })
Napi::Value LoraMixedLinear(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = ObjectArg(info, 0, "options");
  at::Tensor x = TensorField(env, o, "input"), w = TensorField(env, o, "weight");
  Napi::Value biasValue = Field(o, "bias");
  at::Tensor b = biasValue.IsNull() || biasValue.IsUndefined() ? at::Tensor() : TensorValue(env, biasValue, "bias");
  Napi::Value fiofValue = Field(o, "fanInFanOut");
  if (!fiofValue.IsBoolean()) ThrowTypeError(env, "fanInFanOut: expected a boolean, got " + Describe(fiofValue));
  const bool fiof = fiofValue.As<Napi::Boolean>().Value();
  if (w.dim() != 2) ThrowRangeError(env, "weight: expected a 2-D weight, got shape " + c10::str(w.sizes()));
  const int64_t in = fiof ? w.size(0) : w.size(1), out = fiof ? w.size(1) : w.size(0);
  if (x.dim() < 2 || x.size(-1) != in) {
    ThrowRangeError(env, "input: expected shape (rows, ..., " + std::to_string(in) + "), got " + c10::str(x.sizes()));
  }
  if (x.scalar_type() != w.scalar_type() || x.device() != w.device()) {
    ThrowTypeError(env, "input: expected the weight's dtype and device (" + std::string(DtypeName(w.scalar_type())) + " on " + DeviceName(w.device()) + ")");
  }
  Adapters a = AdaptersField(env, o);
  CheckFactorShapes(env, a, in, out, ("a Linear(" + std::to_string(in) + ", " + std::to_string(out) + ")").c_str());
  std::vector<int64_t> rowAdapter = RowsField(env, o, a.A.size(), x.size(0));
  if (!a.A.empty() && a.A[0].device() != w.device()) ThrowTypeError(env, "factors: expected tensors on " + DeviceName(w.device()));

  at::Tensor y = BaseLinear(x, w, b, fiof);
  Selection sel = Select(rowAdapter);
  if (sel.rows.empty()) return WrapTensor(env, y);
  Stacks st = StacksFor(env, o, a, false);
  const int64_t rows = x.size(0), n = static_cast<int64_t>(sel.rows.size());
  at::Tensor rowIndex = IndexTensor(sel.rows, x.device()), adapterIndex = IndexTensor(sel.adapter, x.device());
  at::Tensor xs = (sel.all ? x : x.index_select(0, rowIndex)).reshape({n, -1, in}).to(st.left.scalar_type());
  // (n, L, in)·(n, in, r) → (n, L, r), then ·(n, r, out) → (n, L, out): each row its own factors.
  at::Tensor h = at::bmm(xs, st.left.index_select(0, adapterIndex).transpose(1, 2));
  at::Tensor delta = at::bmm(h, st.B.index_select(0, adapterIndex).transpose(1, 2));
  at::Tensor y3 = AddToRows(y.view({rows, -1, out}), delta, sel, rowIndex);
  return WrapTensor(env, y3.view(y.sizes()));
}

// loraMixedEmbedding({ ids, weight, paddingIdx, factors, scales, rows, cache })
Napi::Value LoraMixedEmbedding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = ObjectArg(info, 0, "options");
  at::Tensor ids = TensorField(env, o, "ids"), w = TensorField(env, o, "weight");
  Napi::Value padValue = Field(o, "paddingIdx");
  if (!padValue.IsNumber()) ThrowTypeError(env, "paddingIdx: expected a number, got " + Describe(padValue));
  const int64_t padding = padValue.As<Napi::Number>().Int64Value();
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
  Selection sel = Select(rowAdapter);
  if (sel.rows.empty()) return WrapTensor(env, y);
  Stacks st = StacksFor(env, o, a, true);
  const int64_t rows = ids.size(0), n = static_cast<int64_t>(sel.rows.size());
  at::Tensor rowIndex = IndexTensor(sel.rows, ids.device()), adapterIndex = IndexTensor(sel.adapter, ids.device());
  at::Tensor chosen = (sel.all ? ids : ids.index_select(0, rowIndex)).reshape({n, -1});
  // Adapter k's column of token t sits at row k·V + t of the stacked Aᵀ table.
  at::Tensor flat = chosen.to(at::kLong) + adapterIndex.view({n, 1}) * V;
  at::Tensor after = at::embedding(st.left, flat);  // (n, L, r_max)
  if (padding >= 0 && after.requires_grad()) {
    // As nn.Embedding's padding_idx: the padding token's column of A gets no gradient.
    after = at::where(chosen.eq(padding).unsqueeze(-1), after.detach(), after);
  }
  at::Tensor delta = at::bmm(after, st.B.index_select(0, adapterIndex).transpose(1, 2));  // (n, L, d)
  at::Tensor y3 = AddToRows(y.view({rows, -1, dim}), delta, sel, rowIndex);
  return WrapTensor(env, y3.view(y.sizes()));
}

}  // namespace

void RegisterLoraMixed(Napi::Object exports) {
  TL_EXPORT(exports, "loraMixedLinear", LoraMixedLinear);
  TL_EXPORT(exports, "loraMixedEmbedding", LoraMixedEmbedding);
}

}  // namespace tl
