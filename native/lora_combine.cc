// Adapter combination (PEFT's add_weighted_adapter and utils/merge_utils.py), one native call per
// layer: the adapters' factors go in, the combined adapter's (A, B) come out.
//
//   cat                      A = [w₁s₁A₁; w₂s₂A₂; ...], B = [B₁, B₂, ...] (exact: its output is
//                            the weighted sum of the adapters' outputs)
//   linear, ties, dare_*,    the merge applied to the A's and to the B's separately, with weights
//   magnitude_prune          ±√|w·s| on A (sign on A only) and √|w·s| on B
//   svd, <merge>_svd         the merge applied to the deltas ΔWᵢ = sᵢBᵢAᵢ with weights wᵢsᵢ (PEFT
//                            scales by sᵢ twice here, and so do we), then a rank-r truncated SVD
//
// DARE's random pruning keeps each entry with probability `density` and, as PEFT's code does,
// does not rescale the kept entries (PEFT computes the rescaled tensor and discards it).
#include "handle.h"
#include "errors.h"
#include "options.h"

namespace tl {
namespace {

struct CombineOptions {
  std::string combination;
  std::vector<at::Tensor> As, Bs;
  std::vector<double> weights, scales;
  double density = 1;
  std::string majoritySignMethod = "total";
  int64_t rank = 0;
  double svdClamp = -1;
  bool svdFullMatrices = true;
  bool transposeDelta = false;
};

// merge_utils.magnitude_based_pruning: keeps the int(density·numel) entries of largest magnitude.
at::Tensor MagnitudePrune(const at::Tensor& t, double density) {
  if (density >= 1) return t;
  at::Tensor mask = torch::zeros_like(t).reshape(-1);
  const int64_t k = static_cast<int64_t>(density * static_cast<double>(t.numel()));
  at::Tensor idx = std::get<1>(t.abs().reshape(-1).topk(k, -1, true));
  mask.index_fill_(0, idx, 1);
  return t * mask.reshape(t.sizes());
}

// merge_utils.random_pruning (DARE): a Bernoulli(density) mask, without rescaling (see above).
at::Tensor RandomPrune(const at::Tensor& t, double density) {
  if (density >= 1) return t;
  return t * torch::bernoulli(torch::full_like(t, density));
}

at::Tensor Weighted(const at::Tensor& stacked, const at::Tensor& w) {
  std::vector<int64_t> shape(stacked.dim(), 1);
  shape[0] = w.size(0);
  return stacked * w.view(shape);
}

// merge_utils.calculate_majority_sign_mask + disjoint_merge.
at::Tensor DisjointMerge(const at::Tensor& stacked, const at::Tensor& w, const std::string& method) {
  at::Tensor sign = stacked.sign();
  at::Tensor magnitude = method == "frequency" ? sign.sum(0) : stacked.sum(0);
  at::Tensor majority = torch::where(magnitude >= 0, torch::ones_like(magnitude), -torch::ones_like(magnitude));
  at::Tensor mask = sign == majority;
  at::Tensor weighted = Weighted(stacked, w);
  at::Tensor kept = (weighted * mask).sum(0);
  return kept / torch::clamp(mask.sum(0), 1.0);
}

// One of merge_utils' task_arithmetic / ties / dare_linear / dare_ties / magnitude_prune.
at::Tensor Merge(const std::string& how, const std::vector<at::Tensor>& tensors, const at::Tensor& w, double density,
                 const std::string& sign) {
  std::vector<at::Tensor> pruned;
  for (const auto& t : tensors) {
    if (how == "ties" || how == "magnitude_prune")
      pruned.push_back(MagnitudePrune(t, density));
    else if (how == "dare_linear" || how == "dare_ties")
      pruned.push_back(RandomPrune(t, density));
    else
      pruned.push_back(t);
  }
  at::Tensor stacked = torch::stack(pruned, 0);
  if (how == "ties" || how == "dare_ties") return DisjointMerge(stacked, w, sign);
  return Weighted(stacked, w).sum(0);
}

std::pair<at::Tensor, at::Tensor> Cat(const CombineOptions& o) {
  std::vector<at::Tensor> As, Bs;
  for (size_t i = 0; i < o.As.size(); ++i) {
    As.push_back(o.As[i] * (o.weights[i] * o.scales[i]));
    Bs.push_back(o.Bs[i]);
  }
  at::Tensor A = torch::cat(As, 0), B = torch::cat(Bs, 1);
  // PEFT sizes the new adapter from the configs' ranks; rows it does not fill stay zero.
  at::Tensor outA = torch::zeros({o.rank, A.size(1)}, A.options()), outB = torch::zeros({B.size(0), o.rank}, B.options());
  outA.narrow(0, 0, A.size(0)).copy_(A);
  outB.narrow(1, 0, B.size(1)).copy_(B);
  return {outA, outB};
}

std::pair<at::Tensor, at::Tensor> FactorMerge(const CombineOptions& o) {
  std::vector<double> wA, wB;
  for (size_t i = 0; i < o.weights.size(); ++i) {
    const double ws = o.weights[i] * o.scales[i];
    wA.push_back(std::sqrt(std::abs(ws)) * (ws >= 0 ? 1 : -1));
    wB.push_back(std::sqrt(std::abs(ws)));
  }
  const auto dev = o.As[0].device();
  at::Tensor tA = torch::tensor(wA, torch::kFloat).to(dev), tB = torch::tensor(wB, torch::kFloat).to(dev);
  at::Tensor A = Merge(o.combination, o.As, tA, o.density, o.majoritySignMethod);
  at::Tensor B = Merge(o.combination, o.Bs, tB, o.density, o.majoritySignMethod);
  return {A.to(o.As[0].scalar_type()), B.to(o.As[0].scalar_type())};
}

std::pair<at::Tensor, at::Tensor> SvdMerge(const CombineOptions& o) {
  std::vector<at::Tensor> deltas;
  std::vector<double> w;
  for (size_t i = 0; i < o.As.size(); ++i) {
    // ΔWᵢ in the (out, in) layout of B·A; PEFT's transpose to the weight's layout and back cancel.
    deltas.push_back(o.Bs[i].matmul(o.As[i]) * o.scales[i]);
    w.push_back(o.weights[i] * o.scales[i]);
  }
  at::Tensor tw = torch::tensor(w, torch::kFloat).to(o.As[0].device());
  std::string how = o.combination == "svd" ? "linear" : o.combination.substr(0, o.combination.size() - 4);
  at::Tensor delta = Merge(how, deltas, tw, o.density, o.majoritySignMethod);
  auto [U, S, Vh] = torch::linalg_svd(delta, o.svdFullMatrices);
  U = U.narrow(1, 0, o.rank).matmul(torch::diag(S.narrow(0, 0, o.rank)));
  Vh = Vh.narrow(0, 0, o.rank);
  if (o.svdClamp >= 0) {
    at::Tensor hi = torch::quantile(torch::cat({U.flatten(), Vh.flatten()}), o.svdClamp);
    U = U.clamp(-hi, hi);
    Vh = Vh.clamp(-hi, hi);
  }
  return {Vh.contiguous(), U.contiguous()};
}

// loraCombineFactors({ combination, As, Bs, weights, scales, rank, density, majoritySignMethod,
// svdClamp, svdFullMatrices }) -> [A, B] of the combined adapter (new tensors).
Napi::Value LoraCombineFactors(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object obj = OptionsArg(info, 0);
  CombineOptions o;
  o.combination = StringOption(obj, "combination");
  o.As = TensorListOption(obj, "As");
  o.Bs = TensorListOption(obj, "Bs");
  o.weights = NumberListOption(obj, "weights");
  o.scales = NumberListOption(obj, "scales");
  const size_t n = o.As.size();
  if (n == 0 || o.Bs.size() != n || o.weights.size() != n || o.scales.size() != n) {
    ThrowRangeError(env, "options: As, Bs, weights and scales must be non-empty and of one length");
  }
  for (size_t i = 0; i < n; ++i) {
    const auto &A = o.As[i], &B = o.Bs[i];
    if (A.dim() != 2 || B.dim() != 2 || A.size(0) != B.size(1) || A.size(1) != o.As[0].size(1) || B.size(0) != o.Bs[0].size(0)) {
      ThrowRangeError(env, "options.As/Bs[" + std::to_string(i) + "]: factor shapes " + c10::str(A.sizes()) + " and " +
                               c10::str(B.sizes()) + " do not fit");
    }
  }
  o.rank = IntOption(obj, "rank");
  o.density = NumberOption(obj, "density", o.density);
  o.majoritySignMethod = OptionalStringOption(obj, "majoritySignMethod").value_or(o.majoritySignMethod);
  o.svdClamp = NumberOption(obj, "svdClamp", o.svdClamp);
  o.svdFullMatrices = BoolOption(obj, "svdFullMatrices", o.svdFullMatrices);

  torch::NoGradGuard noGrad;
  std::pair<at::Tensor, at::Tensor> AB;
  const int64_t in = o.As[0].size(1), out = o.Bs[0].size(0);
  if (o.combination == "cat") {
    int64_t total = 0;
    for (const auto& A : o.As) total += A.size(0);
    if (o.rank < total)
      ThrowRangeError(env, "options.rank: " + std::to_string(o.rank) + " is below the adapters' total rank " + std::to_string(total));
    AB = Cat(o);
  } else if (o.combination == "svd" || (o.combination.size() > 4 && o.combination.compare(o.combination.size() - 4, 4, "_svd") == 0)) {
    if (o.rank < 1 || o.rank > std::min(in, out))
      ThrowRangeError(env, "options.rank: expected 1.." + std::to_string(std::min(in, out)) + ", got " + std::to_string(o.rank));
    AB = SvdMerge(o);
  } else {
    for (const auto& A : o.As) {
      if (A.size(0) != o.rank) ThrowRangeError(env, "options.As: every adapter must have rank " + std::to_string(o.rank));
    }
    AB = FactorMerge(o);
  }
  Napi::Array result = Napi::Array::New(env, 2);
  result.Set(0u, WrapTensor(env, AB.first));
  result.Set(1u, WrapTensor(env, AB.second));
  return result;
}

}  // namespace

void RegisterLoraCombine(Napi::Object exports) { TL_EXPORT(exports, "loraCombineFactors", LoraCombineFactors); }

}  // namespace tl
