// Optimizer steps: one native call updates every parameter, with the arithmetic of
// torch.optim.AdamW / torch.optim.SGD (single-tensor path) and torch.nn.utils.clip_grad_norm_.
// Every argument is checked before the first tensor is written, so a bad call changes nothing.
#include "handle.h"
#include "errors.h"

#include <cmath>
#include <limits>
#include <unordered_set>

namespace tl {
namespace {

// Numbers spelled as JavaScript prints them (NaN, Infinity), since the reader is a JS user.
std::string Num(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "Infinity" : "-Infinity";
  std::ostringstream s;
  s << v;
  return s.str();
}

// A finite number; optimizers must never see NaN or Infinity in their hyper-parameters.
double FiniteArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  double v = NumberArg(info, i, name);
  if (!std::isfinite(v)) ThrowRangeError(info.Env(), std::string(name) + ": expected a finite number, got " + Num(v));
  return v;
}

double NonNegativeArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  double v = FiniteArg(info, i, name);
  if (v < 0) ThrowRangeError(info.Env(), std::string(name) + ": expected a number >= 0, got " + Num(v));
  return v;
}

double BetaArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  double v = FiniteArg(info, i, name);
  if (v < 0 || v >= 1) ThrowRangeError(info.Env(), std::string(name) + ": expected a number in [0, 1), got " + Num(v));
  return v;
}

std::string Shape(const at::Tensor& t) {
  std::string s = "[";
  for (int64_t d = 0; d < t.dim(); ++d) s += (d ? ", " : "") + std::to_string(t.size(d));
  return s + "]";
}

std::string TensorInfo(const at::Tensor& t) {
  return "shape " + Shape(t) + ", " + DtypeName(t.scalar_type()) + ", " + DeviceName(t.device());
}

// Parameters must be distinct floating tensors: a tensor listed twice would be stepped twice.
std::vector<at::Tensor> ParamListArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  std::vector<at::Tensor> params = TensorListArg(info, i, name);
  std::unordered_set<const c10::TensorImpl*> seen;
  for (size_t k = 0; k < params.size(); ++k) {
    const at::Tensor& p = params[k];
    std::string label = std::string(name) + "[" + std::to_string(k) + "]";
    if (!at::isFloatingType(p.scalar_type())) {
      ThrowTypeError(info.Env(), label + ": expected a floating-point tensor, got " + DtypeName(p.scalar_type()));
    }
    if (!p.is_leaf()) ThrowError(info.Env(), label + ": cannot optimize a non-leaf tensor (the result of an operation)");
    if (!seen.insert(p.unsafeGetTensorImpl()).second) {
      ThrowError(info.Env(), label + ": the same tensor appears more than once in the parameter list");
    }
  }
  return params;
}

// The gradients of `params` (undefined where a parameter has none), each checked to fit its parameter.
// `strict` (optimizer steps) also requires a dense gradient of the parameter's dtype.
std::vector<at::Tensor> GradsOf(Napi::Env env, const std::vector<at::Tensor>& params, const char* name, bool strict) {
  std::vector<at::Tensor> grads(params.size());
  for (size_t k = 0; k < params.size(); ++k) {
    const at::Tensor& g = params[k].grad();
    if (!g.defined()) continue;
    std::string label = std::string(name) + "[" + std::to_string(k) + "].grad";
    if (strict && g.layout() != at::kStrided) ThrowError(env, label + ": sparse gradients are not supported");
    if (!g.sizes().equals(params[k].sizes()) || g.device() != params[k].device() ||
        (strict && g.scalar_type() != params[k].scalar_type())) {
      ThrowError(env, label + ": has " + TensorInfo(g) + ", but the parameter has " + TensorInfo(params[k]));
    }
    grads[k] = g;
  }
  return grads;
}

// Per-parameter state must be shaped, typed and placed like its parameter (it is updated in place).
std::vector<at::Tensor> StateListArg(const Napi::CallbackInfo& info, size_t i, const char* name, const std::vector<at::Tensor>& params) {
  std::vector<at::Tensor> state = TensorListArg(info, i, name);
  if (state.size() != params.size()) {
    ThrowRangeError(info.Env(), std::string(name) + ": expected " + std::to_string(params.size()) + " tensors (one per parameter), got " +
                                    std::to_string(state.size()));
  }
  for (size_t k = 0; k < state.size(); ++k) {
    const at::Tensor& s = state[k];
    const at::Tensor& p = params[k];
    if (!s.sizes().equals(p.sizes()) || s.scalar_type() != p.scalar_type() || s.device() != p.device()) {
      ThrowError(info.Env(),
                 std::string(name) + "[" + std::to_string(k) + "]: has " + TensorInfo(s) + ", but its parameter has " + TensorInfo(p));
    }
    if (s.unsafeGetTensorImpl() == p.unsafeGetTensorImpl()) {
      ThrowError(info.Env(), std::string(name) + "[" + std::to_string(k) + "]: is the parameter itself");
    }
  }
  return state;
}

// Per-parameter counts of the steps in which the parameter had a gradient; updated in place.
Napi::Float64Array StepsArg(const Napi::CallbackInfo& info, size_t i, const char* name, size_t count) {
  Napi::Value v = info[i];
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array) {
    ThrowTypeError(info.Env(), std::string(name) + ": expected a Float64Array, got " + Describe(v));
  }
  Napi::Float64Array steps = v.As<Napi::Float64Array>();
  if (steps.ElementLength() != count) {
    ThrowRangeError(info.Env(), std::string(name) + ": expected " + std::to_string(count) + " entries (one per parameter), got " +
                                    std::to_string(steps.ElementLength()));
  }
  for (size_t k = 0; k < count; ++k) {
    double s = steps[k];
    if (!(s >= 0) || std::floor(s) != s || s >= 9007199254740991.0) {
      ThrowRangeError(info.Env(), std::string(name) + "[" + std::to_string(k) + "]: expected a non-negative integer, got " + Num(s));
    }
  }
  return steps;
}

struct AdamWHyper {
  double lr, beta1, beta2, eps, weightDecay;
};

// The dtype the update arithmetic of parameter `p` runs in (float16 on CPU is updated in float32).
at::ScalarType ComputeType(const at::Tensor& p) { return p.is_cpu() && p.scalar_type() == at::kHalf ? at::kFloat : p.scalar_type(); }

// libtorch refuses a Scalar operand that overflows the tensor's dtype ("value cannot be converted
// to type float without overflow") in the middle of an update, after earlier parameters were
// written. Each factor is checked for every parameter before anything changes.
void CheckFactorFits(Napi::Env env, double factor, const at::Tensor& p, size_t k, const std::string& what) {
  at::ScalarType type = ComputeType(p);
  double limit = type == at::kFloat      ? std::numeric_limits<float>::max()
                 : type == at::kHalf     ? 65504.0
                 : type == at::kBFloat16 ? 3.3895313892515355e38
                                         : std::numeric_limits<double>::max();
  if (std::fabs(factor) > limit) {
    ThrowRangeError(env, what + " gives the factor " + Num(factor) + ", which " + DtypeName(type) +
                             " arithmetic cannot represent (params[" + std::to_string(k) + "]); nothing was changed");
  }
}

// One parameter's AdamW update, op for op as torch.optim.AdamW's single-tensor path.
// `maxSq` is undefined unless amsgrad is on.
void AdamWUpdate(at::Tensor& p, at::Tensor& m, at::Tensor& v, at::Tensor& maxSq, const at::Tensor& g, double step, const AdamWHyper& h) {
  p.mul_(1 - h.lr * h.weightDecay);  // decoupled weight decay, before the moment update
  m.mul_(h.beta1).add_(g, 1 - h.beta1);
  v.mul_(h.beta2).addcmul_(g, g, 1 - h.beta2);
  double biasCorrection1 = 1 - std::pow(h.beta1, step);
  double biasCorrection2Sqrt = std::sqrt(1 - std::pow(h.beta2, step));
  double stepSize = h.lr / biasCorrection1;
  at::Tensor second = v;
  if (maxSq.defined()) {
    at::maximum_out(maxSq, maxSq, v);
    second = maxSq;
  }
  at::Tensor denom = (second.sqrt() / biasCorrection2Sqrt).add_(h.eps);  // eps after sqrt(v̂)
  p.addcdiv_(m, denom, -stepSize);
}

// adamwStep(params, expAvg, expAvgSq, maxExpAvgSq, steps, lr, beta1, beta2, eps, weightDecay, amsgrad, maximize)
//   -> number of parameters updated. maxExpAvgSq is [] unless amsgrad.
Napi::Value AdamWStep(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::vector<at::Tensor> params = ParamListArg(info, 0, "params");
  std::vector<at::Tensor> expAvg = StateListArg(info, 1, "expAvg", params);
  std::vector<at::Tensor> expAvgSq = StateListArg(info, 2, "expAvgSq", params);
  Napi::Float64Array steps = StepsArg(info, 4, "steps", params.size());
  double lr = NonNegativeArg(info, 5, "lr");
  double beta1 = BetaArg(info, 6, "beta1");
  double beta2 = BetaArg(info, 7, "beta2");
  double eps = NonNegativeArg(info, 8, "eps");
  double weightDecay = NonNegativeArg(info, 9, "weightDecay");
  bool amsgrad = BoolArg(info, 10, "amsgrad");
  bool maximize = BoolArg(info, 11, "maximize");
  std::vector<at::Tensor> maxExpAvgSq;
  if (amsgrad) {
    maxExpAvgSq = StateListArg(info, 3, "maxExpAvgSq", params);
  } else if (!info[3].IsArray() || info[3].As<Napi::Array>().Length() != 0) {
    ThrowTypeError(env, "maxExpAvgSq: expected an empty array when amsgrad is false, got " + Describe(info[3]));
  }
  std::vector<at::Tensor> grads = GradsOf(env, params, "params", true);
  for (size_t k = 0; k < params.size(); ++k) {
    if (!grads[k].defined()) continue;
    double step = steps[k] + 1;
    CheckFactorFits(env, 1 - lr * weightDecay, params[k], k, "lr " + Num(lr) + " with weightDecay " + Num(weightDecay));
    CheckFactorFits(env, lr / (1 - std::pow(beta1, step)), params[k], k, "lr " + Num(lr) + " over the bias correction");
    CheckFactorFits(env, eps, params[k], k, "eps " + Num(eps));
  }

  at::NoGradGuard noGrad;
  AdamWHyper h{lr, beta1, beta2, eps, weightDecay};
  int updated = 0;
  for (size_t k = 0; k < params.size(); ++k) {
    if (!grads[k].defined()) continue;  // as in PyTorch: no gradient, no step and no state change
    at::Tensor g = maximize ? grads[k].neg() : grads[k];
    double step = steps[k] + 1;
    at::Tensor none;
    at::Tensor& maxSq = amsgrad ? maxExpAvgSq[k] : none;
    if (params[k].is_cpu() && params[k].scalar_type() == at::kHalf) {
      // CPU libtorch has no float16 addcmul/addcdiv/sqrt kernels: update float32 copies and
      // round once per tensor at the end, as PyTorch's fused (fused=True) Adam kernels do.
      auto up = [](const at::Tensor& t) { return t.to(at::kFloat); };
      at::Tensor p32 = up(params[k]), m32 = up(expAvg[k]), v32 = up(expAvgSq[k]);
      at::Tensor mx32 = amsgrad ? up(maxSq) : at::Tensor();
      AdamWUpdate(p32, m32, v32, mx32, up(g), step, h);
      params[k].copy_(p32);
      expAvg[k].copy_(m32);
      expAvgSq[k].copy_(v32);
      if (amsgrad) maxSq.copy_(mx32);
    } else {
      AdamWUpdate(params[k], expAvg[k], expAvgSq[k], maxSq, g, step, h);
    }
    steps[k] = step;
    ++updated;
  }
  return Napi::Number::New(env, updated);
}

// sgdStep(params, momentumBuffers, steps, lr, momentum, dampening, weightDecay, nesterov, maximize)
//   -> number of parameters updated. momentumBuffers is [] when momentum is 0; a buffer whose
//   step count is 0 has not been started and is filled with the first gradient (PyTorch's clone).
Napi::Value SgdStep(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::vector<at::Tensor> params = ParamListArg(info, 0, "params");
  Napi::Float64Array steps = StepsArg(info, 2, "steps", params.size());
  double lr = NonNegativeArg(info, 3, "lr");
  double momentum = NonNegativeArg(info, 4, "momentum");
  double dampening = FiniteArg(info, 5, "dampening");
  double weightDecay = NonNegativeArg(info, 6, "weightDecay");
  bool nesterov = BoolArg(info, 7, "nesterov");
  bool maximize = BoolArg(info, 8, "maximize");
  if (nesterov && (momentum <= 0 || dampening != 0)) {
    ThrowRangeError(env, "nesterov: Nesterov momentum needs momentum > 0 and dampening = 0, got momentum " + Num(momentum) +
                             " and dampening " + Num(dampening));
  }
  std::vector<at::Tensor> buffers;
  if (momentum != 0) {
    buffers = StateListArg(info, 1, "momentumBuffers", params);
  } else if (!info[1].IsArray() || info[1].As<Napi::Array>().Length() != 0) {
    ThrowTypeError(env, "momentumBuffers: expected an empty array when momentum is 0, got " + Describe(info[1]));
  }
  std::vector<at::Tensor> grads = GradsOf(env, params, "params", true);
  for (size_t k = 0; k < params.size(); ++k) {
    if (!grads[k].defined()) continue;
    CheckFactorFits(env, lr, params[k], k, "lr " + Num(lr));
    CheckFactorFits(env, weightDecay, params[k], k, "weightDecay " + Num(weightDecay));
    CheckFactorFits(env, momentum, params[k], k, "momentum " + Num(momentum));
    CheckFactorFits(env, 1 - dampening, params[k], k, "dampening " + Num(dampening));
  }

  at::NoGradGuard noGrad;
  int updated = 0;
  for (size_t k = 0; k < params.size(); ++k) {
    if (!grads[k].defined()) continue;
    at::Tensor& p = params[k];
    at::Tensor d = maximize ? grads[k].neg() : grads[k];
    if (weightDecay != 0) d = d.add(p, weightDecay);  // L2 penalty folded into the gradient
    if (momentum != 0) {
      at::Tensor& buf = buffers[k];
      if (steps[k] == 0) {
        buf.copy_(d);
      } else {
        buf.mul_(momentum).add_(d, 1 - dampening);
      }
      d = nesterov ? d.add(buf, momentum) : buf;
    }
    steps[k] = steps[k] + 1;
    p.add_(d, -lr);
    ++updated;
  }
  return Napi::Number::New(env, updated);
}

// clipGradNorm(params, maxNorm, normType, errorIfNonfinite) -> the total norm of all gradients
// (before clipping), as torch.nn.utils.clip_grad_norm_ computes and applies it.
Napi::Value ClipGradNorm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::vector<at::Tensor> params = TensorListArg(info, 0, "params");
  double maxNorm = NonNegativeArg(info, 1, "maxNorm");
  double normType = NumberArg(info, 2, "normType");
  if (std::isnan(normType) || normType <= 0) {
    ThrowRangeError(env, "normType: expected a number > 0 or Infinity, got " + Num(normType));
  }
  bool errorIfNonfinite = BoolArg(info, 3, "errorIfNonfinite");
  std::vector<at::Tensor> grads;
  for (const at::Tensor& g : GradsOf(env, params, "params", false)) {
    if (g.defined()) grads.push_back(g);
  }
  if (grads.empty()) return Napi::Number::New(env, 0.0);

  at::NoGradGuard noGrad;
  at::Device device = grads[0].device();
  at::ScalarType type = grads[0].scalar_type();
  for (const at::Tensor& g : grads) type = at::promote_types(type, g.scalar_type());
  std::vector<at::Tensor> norms;
  norms.reserve(grads.size());
  for (const at::Tensor& g : grads) {
    at::Tensor n = std::isinf(normType) ? g.abs().max() : at::norm(g, normType);
    norms.push_back(n.to(device, type));
  }
  at::Tensor total = std::isinf(normType) ? at::stack(norms).max() : at::norm(at::stack(norms), normType);
  if (errorIfNonfinite && !std::isfinite(total.item<double>())) {
    ThrowError(env, "clipGradNorm: the total norm of order " + Num(normType) +
                        " of the gradients is non-finite, so they cannot be clipped (nothing was changed)");
  }
  // Python's `max_norm / t` is `t.reciprocal() * max_norm`; the same ops give the same bits.
  at::Tensor coef = ((total + 1e-6).reciprocal() * maxNorm).clamp_max(1.0);
  for (const at::Tensor& g : grads) g.mul_(coef.to(g.device()));
  return Napi::Number::New(env, total.item<double>());
}

// zeroGrad(params, setToNone): clears every gradient in one call.
Napi::Value ZeroGrad(const Napi::CallbackInfo& info) {
  std::vector<at::Tensor> params = TensorListArg(info, 0, "params");
  bool setToNone = BoolArg(info, 1, "setToNone");
  at::NoGradGuard noGrad;
  for (at::Tensor& p : params) {
    at::Tensor& g = p.mutable_grad();
    if (!g.defined()) continue;
    if (setToNone) {
      g = at::Tensor();
      continue;
    }
    // As PyTorch: a gradient recorded with a graph is cut from it before being zeroed in place.
    if (g.grad_fn()) {
      g = g.detach();
    } else {
      g.requires_grad_(false);
    }
    g.zero_();
  }
  return info.Env().Undefined();
}

// zerosLike(params) -> fresh zero tensors shaped, typed and placed like each parameter (optimizer state).
Napi::Value ZerosLike(const Napi::CallbackInfo& info) {
  std::vector<at::Tensor> params = ParamListArg(info, 0, "params");
  Napi::Env env = info.Env();
  Napi::Array out = Napi::Array::New(env, params.size());
  at::NoGradGuard noGrad;
  for (size_t k = 0; k < params.size(); ++k) {
    out.Set(static_cast<uint32_t>(k), WrapTensor(env, at::zeros_like(params[k], at::MemoryFormat::Preserve)));
  }
  return out;
}

}  // namespace

void RegisterOptim(Napi::Object exports) {
  TL_EXPORT(exports, "adamwStep", AdamWStep);
  TL_EXPORT(exports, "sgdStep", SgdStep);
  TL_EXPORT(exports, "clipGradNorm", ClipGradNorm);
  TL_EXPORT(exports, "zeroGrad", ZeroGrad);
  TL_EXPORT(exports, "optimZerosLike", ZerosLike);
}

}  // namespace tl
