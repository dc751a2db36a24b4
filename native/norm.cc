// Normalization layers, one native call each: layerNorm (ATen's fused kernel, forward and
// backward) and rmsNorm (x · rsqrt(mean(x², last dims) + eps) · weight, as Llama's RMSNorm).
// Shape and dtype checks with their wording live in lib/norm.ts; these check memory safety.
#include "option_fields.h"

namespace tl {
namespace {

bool HalfOnCpu(const at::Tensor& t) { return t.scalar_type() == at::kHalf && t.device().is_cpu(); }

// The trailing dims of `x` that `normalizedShape` names, as reduction dims.
std::vector<int64_t> TrailingDims(Napi::Env env, const at::Tensor& x, const std::vector<int64_t>& normalizedShape) {
  const int64_t n = static_cast<int64_t>(normalizedShape.size());
  if (n < 1 || n > x.dim()) ThrowRangeError(env, "normalizedShape: expected 1 to " + std::to_string(x.dim()) + " trailing dims of input " + c10::str(x.sizes()));
  std::vector<int64_t> dims;
  for (int64_t i = 0; i < n; ++i) {
    if (x.size(x.dim() - n + i) != normalizedShape[i]) {
      ThrowRangeError(env, "normalizedShape: " + c10::str(normalizedShape) + " does not match the trailing dims of input " + c10::str(x.sizes()));
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
  Napi::Object o = OptionsObjectArg(info, 0, "options");
  at::Tensor& x = TensorField(o, "input");
  std::vector<int64_t> shape = ShapeField(o, "normalizedShape");
  at::Tensor w = OptionalTensorField(o, "weight"), b = OptionalTensorField(o, "bias");
  const double eps = NumberField(o, "eps");
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

// rmsNorm({ input, normalizedShape, weight?, eps }): half and bfloat16 inputs are normalized in
// fp32 and rounded back before the weight multiplies, as transformers' LlamaRMSNorm does.
Napi::Value RmsNorm(const Napi::CallbackInfo& info) {
  Napi::Object o = OptionsObjectArg(info, 0, "options");
  at::Tensor& x = TensorField(o, "input");
  std::vector<int64_t> shape = ShapeField(o, "normalizedShape");
  at::Tensor w = OptionalTensorField(o, "weight");
  const double eps = NumberField(o, "eps");
  std::vector<int64_t> dims = TrailingDims(info.Env(), x, shape);
  CheckAffine(info.Env(), w, "weight", shape);
  const bool half = x.scalar_type() == at::kHalf || x.scalar_type() == at::kBFloat16;
  at::Tensor xf = half ? x.to(at::kFloat) : x;
  at::Tensor y = xf * at::rsqrt(xf.pow(2).mean(dims, /*keepdim=*/true).add(eps));
  if (half) y = y.to(x.scalar_type());
  if (w.defined()) y = HalfOnCpu(y) ? (y.to(at::kFloat) * w.to(at::kFloat)).to(at::kHalf) : y * w;
  return WrapTensor(info.Env(), y);
}

}  // namespace

void RegisterNorm(Napi::Object exports) {
  TL_EXPORT(exports, "layerNorm", LayerNorm);
  TL_EXPORT(exports, "rmsNorm", RmsNorm);
}

}  // namespace tl
