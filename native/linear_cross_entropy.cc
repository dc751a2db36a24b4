// linearCrossEntropy: cross_entropy(linear(hidden, weight, bias), targets), mean over the targets
// that are not ignored, without ever holding the (N, V) logits. A causal LM's head at GPT-2's
// vocabulary makes 200 MB of logits per 1024 tokens, and the stock graph writes and reads that
// block five times (logits, their fp32 copy, log_softmax, its gradient, the logits' gradient).
// Here the rows go through in chunks: each chunk's logits are computed, turned in place into
// softmax − one-hot (the logits' gradient), and multiplied back at once into the gradients of
// hidden (and of weight and bias when they train). The whole gradient is thus computed in the
// forward, which is exact because the loss is a scalar: backward only scales it by the
// incoming gradient. The shape and dtype checks with their wording live in
// lib/linear-cross-entropy.ts; these check memory safety (a target out of [0, V) is refused here).
#include <c10/util/Optional.h>

#include "errors.h"
#include "handle.h"
#include "options.h"

namespace tl {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// What the forward computes besides the loss.
struct GradientsWanted {
  bool hidden = false, weight = false, bias = false;
  bool any() const { return hidden || weight || bias; }
};

// Loss and (when wanted) gradients, chunk by chunk: the loss is the fp32 (fp64 for fp64 inputs)
// mean over the rows whose target is not ignoreIndex (NaN when none is, as cross_entropy gives).
struct ChunkedResult {
  at::Tensor loss, gradHidden, gradWeight, gradBias;
};

ChunkedResult Compute(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& bias, const at::Tensor& targets,
                      int64_t ignoreIndex, int64_t chunkRows, GradientsWanted want) {
  const int64_t N = hidden.size(0);
  const at::ScalarType accType = hidden.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const at::Tensor valid = targets.ne(ignoreIndex);
  // Ignored rows gather class 0 and are masked out of the sum and of the gradient.
  const at::Tensor classes = targets.masked_fill(valid.logical_not(), 0).unsqueeze(1);
  const at::Tensor count = valid.sum().to(accType);
  // Each valid row's share of the mean; 0 for ignored rows (and all of them when none is valid).
  const at::Tensor rowScale = valid.to(accType).div_(count.clamp_min(1)).unsqueeze(1);
  const at::Tensor weightT = weight.t();

  ChunkedResult out;
  at::Tensor lossSum = at::zeros({}, hidden.options().dtype(accType));
  if (want.hidden) out.gradHidden = at::empty_like(hidden, at::MemoryFormat::Contiguous);
  if (want.weight) out.gradWeight = at::zeros_like(weight, at::MemoryFormat::Contiguous);
  if (want.bias) out.gradBias = at::zeros({weight.size(0)}, bias.options());

  for (int64_t start = 0; start < N; start += chunkRows) {
    const int64_t rows = std::min(chunkRows, N - start);
    const at::Tensor h = hidden.narrow(0, start, rows);
    const at::Tensor cls = classes.narrow(0, start, rows);
    at::Tensor logits = bias.defined() ? at::addmm(bias, h, weightT) : at::mm(h, weightT);
    at::Tensor z = logits.to(accType);  // the same tensor when already of accType: modified in place below
    const at::Tensor picked = z.gather(1, cls);
    const at::Tensor rowMax = std::get<0>(z.max(1, true));
    z.sub_(rowMax).exp_();
    const at::Tensor sumExp = z.sum(1, true);
    // log Σ exp(z) − z[target]: cross_entropy's per-row loss, row max subtracted for stability.
    const at::Tensor rowLoss = sumExp.log().add_(rowMax).sub_(picked);
    lossSum.add_(rowLoss.masked_fill_(valid.narrow(0, start, rows).unsqueeze(1).logical_not(), 0).sum());
    if (!want.any()) continue;
    // d loss / d logits = (softmax − one-hot) × the row's share of the mean: exp(z − max) times
    // share / Σexp in one pass, then −share at the target.
    const at::Tensor share = rowScale.narrow(0, start, rows);
    z.mul_(share / sumExp).scatter_add_(1, cls, share.neg());
    const at::Tensor g = z.to(hidden.scalar_type());
    if (want.hidden) {
      at::Tensor gradRows = out.gradHidden.narrow(0, start, rows);
      at::mm_out(gradRows, g, weight);
    }
    if (want.weight) out.gradWeight.addmm_(g.t(), h);
    if (want.bias) out.gradBias.add_(g.sum(0).to(bias.scalar_type()));
  }
  // cross_entropy's mean over no target at all is 0/0.
  out.loss = lossSum.div_(count);
  return out;
}

// The loss as ONE autograd node whose backward scales the gradients computed in forward.
struct LinearCrossEntropyFunction : public torch::autograd::Function<LinearCrossEntropyFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& hidden, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                            const at::Tensor& targets, int64_t ignoreIndex, int64_t chunkRows, bool gradHidden, bool gradWeight,
                            bool gradBias) {
    const at::Tensor b = bias.has_value() ? *bias : at::Tensor();
    ChunkedResult r = Compute(hidden, weight, b, targets, ignoreIndex, chunkRows, {gradHidden, gradWeight, gradBias});
    ctx->save_for_backward({r.gradHidden, r.gradWeight, r.gradBias});
    return r.loss;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor& g = grads[0];
    auto scaled = [&](const at::Tensor& t) { return t.defined() ? t.mul(g.to(t.scalar_type())) : at::Tensor(); };
    return {scaled(saved[0]), scaled(saved[1]), scaled(saved[2]), at::Tensor(), at::Tensor(),
            at::Tensor(),     at::Tensor(),     at::Tensor(),     at::Tensor()};
  }
};

// linearCrossEntropy({ hidden (N, d), weight (V, d), bias (V) | null, target int64 (N), ignoreIndex, chunkRows })
Napi::Value LinearCrossEntropy(const Napi::CallbackInfo& info) {
  Napi::Object o = OptionsArg(info, 0);
  at::Tensor& hidden = TensorOption(o, "hidden");
  at::Tensor& weight = TensorOption(o, "weight");
  at::Tensor bias = OptionalTensorOption(o, "bias");
  at::Tensor& targets = TensorOption(o, "target");
  const int64_t ignoreIndex = IntOption(o, "ignoreIndex");
  const int64_t chunkRows = IntOption(o, "chunkRows", 1, std::numeric_limits<int32_t>::max());
  Napi::Env env = info.Env();
  if (hidden.dim() != 2 || weight.dim() != 2 || hidden.size(1) != weight.size(1))
    ThrowRangeError(env, "hidden " + c10::str(hidden.sizes()) + " and weight " + c10::str(weight.sizes()) + ": expected (N, d) and (V, d)");
  if (targets.scalar_type() != at::kLong || targets.dim() != 1 || targets.size(0) != hidden.size(0))
    ThrowRangeError(env, "target: expected int64 class indices of shape [" + std::to_string(hidden.size(0)) + "]");
  if (bias.defined() && (bias.dim() != 1 || bias.size(0) != weight.size(0)))
    ThrowRangeError(env, "bias: expected shape [" + std::to_string(weight.size(0)) + "], got " + c10::str(bias.sizes()));
  const int64_t V = weight.size(0);
  const at::Tensor outOfRange = targets.ne(ignoreIndex).logical_and(targets.lt(0).logical_or(targets.ge(V)));
  if (outOfRange.any().item<bool>()) {
    const int64_t bad = targets.masked_select(outOfRange)[0].item<int64_t>();
    ThrowRangeError(env, "target: class " + std::to_string(bad) + " is out of range [0, " + std::to_string(V) +
                             ") (and is not ignoreIndex " + std::to_string(ignoreIndex) + ")");
  }
  const bool grad = at::GradMode::is_enabled();
  const bool gh = grad && hidden.requires_grad(), gw = grad && weight.requires_grad(), gb = grad && bias.defined() && bias.requires_grad();
  c10::optional<at::Tensor> b = bias.defined() ? c10::optional<at::Tensor>(bias) : c10::nullopt;
  return WrapTensor(env, LinearCrossEntropyFunction::apply(hidden, weight, b, targets, ignoreIndex, chunkRows, gh, gw, gb));
}

}  // namespace

void RegisterLinearCrossEntropy(Napi::Object exports) { TL_EXPORT(exports, "linearCrossEntropy", LinearCrossEntropy); }

}  // namespace tl
