// Weight-aware LoRA initializations (PEFT's init_lora_weights = "pissa", "pissa_niter_N",
// "olora", "orthogonal"), one native call per layer: the decomposition runs in fp32 on the
// weight's device through torch::linalg, the factors are written in place, and for PiSSA and
// OLoRA the base weight is replaced by the residual W - s·B·A in its own dtype.
//
// TypeScript validates the method, rank and layer kind; this file checks only what keeps
// memory safe (shapes of the tensors it writes).
#include "handle.h"
#include "errors.h"
#include "options.h"

namespace tl {
namespace {

struct InitOptions {
  at::Tensor weight, A, B;
  std::string method;
  int64_t niter = -1;
  double scale = 1;
  bool fanInFanOut = false;
};

// Transposes a (in, out) Conv1D weight into the (out, in) layout the formulas are written for.
at::Tensor OutIn(const at::Tensor& w, bool fanInFanOut) { return fanInFanOut ? w.t() : w; }

// torch.svd_lowrank's range finder (Halko et al. 2009, algorithm 4.4), as torch 1.13 runs it: the
// same random draw and the same QR sequence, so a seeded run reproduces Python's factors.
at::Tensor ApproximateBasis(const at::Tensor& M, int64_t q, int64_t niter) {
  at::Tensor R = torch::randn({M.size(1), q}, M.options());
  at::Tensor Q = std::get<0>(torch::linalg_qr(M.matmul(R)));
  for (int64_t i = 0; i < niter; ++i) {
    Q = std::get<0>(torch::linalg_qr(M.t().matmul(Q)));
    Q = std::get<0>(torch::linalg_qr(M.matmul(Q)));
  }
  return Q;
}

// torch.svd_lowrank(M, q, niter) for a dense real M: returns (U, S, V) with M ≈ U diag(S) Vᵀ.
std::tuple<at::Tensor, at::Tensor, at::Tensor> SvdLowrank(const at::Tensor& M, int64_t q, int64_t niter) {
  const int64_t m = M.size(0), n = M.size(1);
  if (m < n || n > q) {
    at::Tensor Q = ApproximateBasis(M.t(), q, niter);
    at::Tensor Bt = M.matmul(Q);
    auto [U, S, Vh] = torch::linalg_svd(Bt, false);
    return {U, S, Q.matmul(Vh.t())};
  }
  at::Tensor Q = ApproximateBasis(M, q, niter);
  at::Tensor Bt = M.t().matmul(Q).t();
  auto [U, S, Vh] = torch::linalg_svd(Bt, false);
  return {Q.matmul(U), S, Vh.t()};
}

// PiSSA: the top-r singular triplets, with √(S/s) on each side so that s·B·A is their sum.
std::pair<at::Tensor, at::Tensor> PissaFactors(const at::Tensor& W, int64_t r, double scale, int64_t niter) {
  at::Tensor Vr, Sr, Uhr;
  if (niter < 0) {
    auto [V, S, Uh] = torch::linalg_svd(W, false);
    Vr = V.narrow(1, 0, r);
    Sr = S.narrow(0, 0, r) / scale;
    Uhr = Uh.narrow(0, 0, r);
  } else {
    auto [V, S, U] = SvdLowrank(W, r, niter);
    Vr = V;
    Sr = S / scale;
    Uhr = U.t();
  }
  at::Tensor root = Sr.sqrt();
  return {torch::diag(root).matmul(Uhr), Vr.matmul(torch::diag(root))};
}

// OLoRA: A = the first r rows of R, B = the first r columns of Q, from W = QR.
std::pair<at::Tensor, at::Tensor> OloraFactors(const at::Tensor& W, int64_t r) {
  auto [Q, R] = torch::linalg_qr(W);
  return {R.narrow(0, 0, r).contiguous(), Q.narrow(1, 0, r).contiguous()};
}

// PEFT's "orthogonal": A and B draw their directions from the odd and even rows of one random
// orthogonal r×r matrix, so B·A = 0 (up to round-off) although neither factor is zero. Drawn on
// the CPU generator as PEFT does, so a seeded run reproduces PEFT's factors.
std::pair<at::Tensor, at::Tensor> OrthogonalFactors(int64_t in, int64_t out, int64_t r) {
  at::Tensor X = torch::randn({r, r});
  at::Tensor Q = std::get<0>(torch::linalg_qr(X));
  at::Tensor qOdd = Q.slice(0, 0, r, 2), qEven = Q.slice(0, 1, r, 2);
  at::Tensor A = torch::randn({in, r / 2}).mm(qOdd).t() / 10.0;
  at::Tensor B = torch::randn({r / 2, out}).t().mm(qEven) / 10.0;
  return {A.contiguous(), B.contiguous()};
}

// loraInitFromWeight({ weight, A, B, method, niter, scale, fanInFanOut }): fills A (r, in) and
// B (out, r) in place; for "pissa" and "olora" writes the residual into weight.
Napi::Value LoraInitFromWeight(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = OptionsArg(info, 0);
  InitOptions opt;
  opt.weight = TensorOption(o, "weight");
  opt.A = TensorOption(o, "A");
  opt.B = TensorOption(o, "B");
  opt.method = StringOption(o, "method");
  opt.niter = IntOption(o, "niter");
  opt.scale = NumberOption(o, "scale");
  opt.fanInFanOut = o.Get("fanInFanOut").ToBoolean();

  const at::Tensor& w = opt.weight;
  if (w.dim() != 2) ThrowRangeError(env, "options.weight: expected a 2-D weight, got shape " + c10::str(w.sizes()));
  const int64_t out = opt.fanInFanOut ? w.size(1) : w.size(0), in = opt.fanInFanOut ? w.size(0) : w.size(1);
  const int64_t r = opt.A.dim() == 2 ? opt.A.size(0) : -1;
  if (r < 1 || opt.A.size(1) != in || opt.B.dim() != 2 || opt.B.size(0) != out || opt.B.size(1) != r) {
    ThrowRangeError(env, "options.A/B: expected lora_A [r, " + std::to_string(in) + "] and lora_B [" + std::to_string(out) + ", r], got " +
                             c10::str(opt.A.sizes()) + " and " + c10::str(opt.B.sizes()));
  }
  if (!at::isFloatingType(w.scalar_type()))
    ThrowTypeError(env, std::string("options.weight: expected a floating dtype, got ") + DtypeName(w.scalar_type()));

  torch::NoGradGuard noGrad;
  if (opt.method == "orthogonal") {
    if (r % 2 != 0) ThrowRangeError(env, "options.A: orthogonal init needs an even rank, got " + std::to_string(r));
    auto [A, B] = OrthogonalFactors(in, out, r);
    opt.A.copy_(A);
    opt.B.copy_(B);
    return env.Undefined();
  }
  if (opt.method != "pissa" && opt.method != "olora")
    ThrowTypeError(env, "options.method: expected \"pissa\", \"olora\" or \"orthogonal\", got \"" + opt.method + "\"");
  if (r > std::min(in, out))
    ThrowRangeError(env, "options.A: rank " + std::to_string(r) + " exceeds min(in, out) = " + std::to_string(std::min(in, out)));

  // The decomposition and the residual are computed in fp32 (as PEFT does), then cast once.
  at::Tensor W = OutIn(w, opt.fanInFanOut).to(at::kFloat);
  auto [A, B] = opt.method == "pissa" ? PissaFactors(W, r, opt.scale, opt.niter) : OloraFactors(W, r);
  at::Tensor residual = W - opt.scale * B.matmul(A);
  if (!residual.isfinite().all().item<bool>() || !A.isfinite().all().item<bool>() || !B.isfinite().all().item<bool>()) {
    ThrowRangeError(env, "options.weight: the " + opt.method + " decomposition produced NaN or Inf; the base weight is left unchanged");
  }
  at::Tensor newWeight = OutIn(residual, opt.fanInFanOut).to(w.scalar_type());
  opt.A.copy_(A);
  opt.B.copy_(B);
  w.copy_(newWeight);
  return env.Undefined();
}

}  // namespace

void RegisterLoraInit(Napi::Object exports) { TL_EXPORT(exports, "loraInitFromWeight", LoraInitFromWeight); }

}  // namespace tl
