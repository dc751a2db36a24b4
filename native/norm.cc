// Normalization layers, one native call each: layerNorm (ATen's fused kernel, forward and
// backward) and rmsNorm (x · rsqrt(mean(x², last dims) + eps) · weight, as Llama's RMSNorm).
// Shape and dtype checks with their wording live in lib/norm.ts; these check memory safety.
#include <c10/util/Optional.h>

#include "errors.h"
#include "handle.h"
#include "options.h"

namespace tl {
namespace {

bool HalfOnCpu(const at::Tensor& t) { return t.scalar_type() == at::kHalf && t.device().is_cpu(); }

// The trailing dims of `x` that `normalizedShape` names, as reduction dims.
std::vector<int64_t> TrailingDims(Napi::Env env, const at::Tensor& x, const std::vector<int64_t>& normalizedShape) {
  const int64_t n = static_cast<int64_t>(normalizedShape.size());
  if (n < 1 || n > x.dim())
    ThrowRangeError(env, "normalizedShape: expected 1 to " + std::to_string(x.dim()) + " trailing dims of input " + c10::str(x.sizes()));
  std::vector<int64_t> dims;
  for (int64_t i = 0; i < n; ++i) {
    if (x.size(x.dim() - n + i) != normalizedShape[i]) {
      ThrowRangeError(
          env, "normalizedShape: " + c10::str(normalizedShape) + " does not match the trailing dims of input " + c10::str(x.sizes()));
    }
    dims.push_back(x.dim() - n + i);
  }
  return dims;
}

void CheckAffine(Napi::Env env, const at::Tensor& p, const char* name, const std::vector<int64_t>& normalizedShape) {
  if (p.defined() && !p.sizes().equals(normalizedShape)) {
    ThrowRangeError(env, std::string(name) + ": expected shape " + c10::str(normalizedShape) + ", got " + c10::str(p.sizes()));
  }
}

// layerNorm({ input, normalizedShape, weight?, bias?, eps })
Napi::Value LayerNorm(const Napi::CallbackInfo& info) {
  Napi::Object o = OptionsArg(info, 0);
  at::Tensor& x = TensorOption(o, "input");
  std::vector<int64_t> shape = ShapeOption(o, "normalizedShape");
  at::Tensor w = OptionalTensorOption(o, "weight"), b = OptionalTensorOption(o, "bias");
  const double eps = NumberOption(o, "eps");
  TrailingDims(info.Env(), x, shape);
  CheckAffine(info.Env(), w, "weight", shape);
  CheckAffine(info.Env(), b, "bias", shape);
  if (HalfOnCpu(x)) {
    // libtorch 1.13 has no fp16 layer_norm kernel on CPU: compute in fp32 and round once.
    at::Tensor wf = w.defined() ? w.to(at::kFloat) : w, bf = b.defined() ? b.to(at::kFloat) : b;
    return WrapTensor(info.Env(), at::layer_norm(x.to(at::kFloat), shape, wf, bf, eps).to(at::kHalf));
  }
  return WrapTensor(info.Env(), at::layer_norm(x, shape, w, b, eps));
}

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

bool IsHalf(const at::Tensor& t) { return t.scalar_type() == at::kHalf || t.scalar_type() == at::kBFloat16; }

// x (rows, n) → y = round(x · r) · w with r = rsqrt(mean(x², -1) + eps), computed in fp32 for
// half types. ONE autograd node: the stock graph (pow, mean, add, rsqrt, mul, cast, mul) keeps
// six nodes and their saved tensors; this one saves x and the per-row r and recomputes x · r.
struct RmsNormFunction : public torch::autograd::Function<RmsNormFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x2, const c10::optional<at::Tensor>& weight, double eps) {
    at::Tensor xf = IsHalf(x2) ? x2.to(at::kFloat) : x2;
    at::Tensor r = at::rsqrt(xf.pow(2).mean({-1}, true).add_(eps));
    at::Tensor y = xf.mul(r).to(x2.scalar_type());
    ctx->save_for_backward({x2, r, weight.has_value() ? *weight : at::Tensor()});
    if (!weight.has_value()) return y;
    // libtorch 1.13 has no fp16 multiply on CPU: widen, multiply, round once to the promoted type.
    if (HalfOnCpu(y)) return y.to(at::kFloat).mul_(weight->to(at::kFloat)).to(at::promote_types(y.scalar_type(), weight->scalar_type()));
    return y.mul(*weight);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor &x2 = saved[0], &r = saved[1], &w = saved[2];
    const bool half = IsHalf(x2);
    at::Tensor g = grads[0].to(half ? at::kFloat : x2.scalar_type());
    at::Tensor n = (half ? x2.to(at::kFloat) : x2).mul(r);
    at::Tensor gx, gw;
    if (w.defined() && ctx->needs_input_grad(1)) gw = g.mul(half ? n.to(x2.scalar_type()).to(at::kFloat) : n).sum(0).to(w.scalar_type());
    if (ctx->needs_input_grad(0)) {
      at::Tensor gn = w.defined() ? g.mul(w.to(g.scalar_type())) : g;
      // d/dx of x·r: r · (gn − n · mean(gn · n)).
      gx = gn.sub(n.mul(gn.mul(n).mean({-1}, true))).mul_(r).to(x2.scalar_type());
    }
    return {gx, gw, at::Tensor()};
  }
};

// rmsNorm({ input, normalizedShape, weight?, eps }): half and bfloat16 inputs are normalized in
// fp32 and rounded back before the weight multiplies, as transformers' LlamaRMSNorm does.
Napi::Value RmsNorm(const Napi::CallbackInfo& info) {
  Napi::Object o = OptionsArg(info, 0);
  at::Tensor& x = TensorOption(o, "input");
  std::vector<int64_t> shape = ShapeOption(o, "normalizedShape");
  at::Tensor w = OptionalTensorOption(o, "weight");
  const double eps = NumberOption(o, "eps");
  TrailingDims(info.Env(), x, shape);
  CheckAffine(info.Env(), w, "weight", shape);
  // An integer input or a weight on another device fails in ATen; lib/norm.ts words it (and refuses an integer weight first).
  const int64_t n = c10::multiply_integers(shape);
  at::Tensor x2 = x.reshape({-1, n});
  c10::optional<at::Tensor> weight = w.defined() ? c10::optional<at::Tensor>(w.reshape({n})) : c10::nullopt;
  return WrapTensor(info.Env(), RmsNormFunction::apply(x2, weight, eps).view(x.sizes()));
}

}  // namespace

void RegisterNorm(Napi::Object exports) {
  TL_EXPORT(exports, "layerNorm", LayerNorm);
  TL_EXPORT(exports, "rmsNorm", RmsNorm);
}

}  // namespace tl
