// Optimizer steps: one native call updates every parameter, with the arithmetic of
// torch.optim.AdamW / torch.optim.SGD (single-tensor path) and torch.nn.utils.clip_grad_norm_.
//
// lib/optim owns the semantics (hyper-parameter ranges, the parameter list, the state it
// creates) and their messages. What is checked here is what memory safety needs (the JS type of
// each field, the lengths of the lists indexed per parameter, live handles), plus what only this
// side can see at step time and libtorch would otherwise refuse half-way through the parameter
// list: each gradient fitting its parameter, and each update factor fitting the parameter's
// dtype. All of it runs before the first tensor is written, so a refused call changes nothing.
#include "handle.h"
#include "errors.h"
#include "options.h"

#include <cmath>
#include <limits>

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

std::string Shape(const at::Tensor& t) {
  std::string s = "[";
  for (int64_t d = 0; d < t.dim(); ++d) s += (d ? ", " : "") + std::to_string(t.size(d));
  return s + "]";
}

std::string TensorInfo(const at::Tensor& t) {
  return "shape " + Shape(t) + ", " + DtypeName(t.scalar_type()) + ", " + DeviceName(t.device());
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

// A list of per-parameter state tensors (updated in place, indexed like the parameters).
std::vector<at::Tensor> StateListOption(const Napi::Object& o, const char* key, size_t count) {
  std::vector<at::Tensor> state = TensorListOption(o, key);
  if (state.size() != count) {
    ThrowRangeError(o.Env(), std::string(key) + ": expected " + std::to_string(count) + " tensors (one per parameter), got " +
                                 std::to_string(state.size()));
  }
  return state;
}

// Per-parameter counts of the steps in which the parameter had a gradient; updated in place.
Napi::Float64Array StepsOption(const Napi::Object& o, const char* key, size_t count) {
  Napi::Value v = o.Get(key);
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array) {
    ThrowTypeError(o.Env(), std::string(key) + ": expected a Float64Array, got " + Describe(v));
  }
  Napi::Float64Array steps = v.As<Napi::Float64Array>();
  if (steps.ElementLength() != count) {
    ThrowRangeError(o.Env(), std::string(key) + ": expected " + std::to_string(count) + " entries (one per parameter), got " +
                                 std::to_string(steps.ElementLength()));
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

// adamwStep({ params, expAvg, expAvgSq, maxExpAvgSq, steps, lr, beta1, beta2, eps, weightDecay,
//   amsgrad, maximize }) -> number of parameters updated. maxExpAvgSq is read only when amsgrad.
Napi::Value AdamWStep(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = OptionsArg(info, 0);
  std::vector<at::Tensor> params = TensorListOption(o, "params");
  std::vector<at::Tensor> expAvg = StateListOption(o, "expAvg", params.size());
  std::vector<at::Tensor> expAvgSq = StateListOption(o, "expAvgSq", params.size());
  Napi::Float64Array steps = StepsOption(o, "steps", params.size());
  double lr = NumberOption(o, "lr");
  double beta1 = NumberOption(o, "beta1");
  double beta2 = NumberOption(o, "beta2");
  double eps = NumberOption(o, "eps");
  double weightDecay = NumberOption(o, "weightDecay");
  bool amsgrad = BoolOption(o, "amsgrad", false);
  bool maximize = BoolOption(o, "maximize", false);
  std::vector<at::Tensor> maxExpAvgSq;
  if (amsgrad) maxExpAvgSq = StateListOption(o, "maxExpAvgSq", params.size());
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

// sgdStep({ params, momentumBuffers, steps, lr, momentum, dampening, weightDecay, nesterov, maximize })
//   -> number of parameters updated. momentumBuffers is read only when momentum is not 0; a buffer
//   whose step count is 0 has not been started and is filled with the first gradient (PyTorch's clone).
Napi::Value SgdStep(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = OptionsArg(info, 0);
  std::vector<at::Tensor> params = TensorListOption(o, "params");
  Napi::Float64Array steps = StepsOption(o, "steps", params.size());
  double lr = NumberOption(o, "lr");
  double momentum = NumberOption(o, "momentum");
  double dampening = NumberOption(o, "dampening");
  double weightDecay = NumberOption(o, "weightDecay");
  bool nesterov = BoolOption(o, "nesterov", false);
  bool maximize = BoolOption(o, "maximize", false);
  std::vector<at::Tensor> buffers;
  if (momentum != 0) buffers = StateListOption(o, "momentumBuffers", params.size());
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

// clipGradNorm({ params, maxNorm, normType, errorIfNonfinite }) -> the total norm of all gradients
// (before clipping), as torch.nn.utils.clip_grad_norm_ computes and applies it. With
// errorIfNonfinite, a non-finite total is returned without clipping: lib/optim/clip.ts throws.
Napi::Value ClipGradNorm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = OptionsArg(info, 0);
  std::vector<at::Tensor> params = TensorListOption(o, "params");
  double maxNorm = NumberOption(o, "maxNorm");
  double normType = NumberOption(o, "normType");
  bool errorIfNonfinite = BoolOption(o, "errorIfNonfinite", false);
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
  if (errorIfNonfinite && !std::isfinite(total.item<double>())) return Napi::Number::New(env, total.item<double>());
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
  std::vector<at::Tensor> params = TensorListArg(info, 0, "params");
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
