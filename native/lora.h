// LoRA kernels: the fused Linear forward (a custom autograd node with a fused backward),
// the Embedding forward, and merge arithmetic shared by the sync and async entry points.
#pragma once
#include "torch_headers.h"

namespace tl {

/** One adapter's factors as the kernels see them. */
struct LoraFactors {
  at::Tensor A;          // (r, in) for Linear, (r, V) for Embedding
  at::Tensor B;          // (out, r) for Linear, (d, r) for Embedding
  double scale = 1.0;    // lora_alpha / r, or / sqrt(r) with rsLoRA
  double dropout = 0.0;  // Linear only
};

/** y = x Wᵀ + b + Σ s·(dropout(x) Aᵀ) Bᵀ (W is (in, out) when fanInFanOut). */
at::Tensor LoraLinearForward(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, bool fanInFanOut, bool training,
                             const std::vector<LoraFactors>& adapters);

/** y = W[ids] + Σ s·(Aᵀ[ids]) Bᵀ, with the base layer's padding index. */
at::Tensor LoraEmbeddingForward(const at::Tensor& ids, const at::Tensor& weight, int64_t paddingIdx,
                                const std::vector<LoraFactors>& adapters);

enum class LoraKind { Linear, Embedding };

/**
 * Adds every adapter's delta to `weight` in place (Linear: s·BA, ᵀ with fanInFanOut;
 * Embedding: s·(BA)ᵀ). Low-precision weights are merged in fp32 and cast once.
 * With `safe`, the result is computed aside and written only if finite; otherwise it throws
 * and `weight` is untouched. With `keepBackup` (the first merge) the merged values go to a new
 * buffer that `weight` then points to, and the returned backup holds the pristine buffer.
 */
at::Tensor MergeInto(at::Tensor weight, const std::vector<LoraFactors>& adapters, LoraKind kind, bool fanInFanOut, bool safe,
                     bool keepBackup);

/**
 * MergeInto in two steps, for a merge on a worker thread: ComputeMerge does the arithmetic and,
 * with `keepBackup`, returns the merged weight instead of installing it (otherwise it writes in
 * place and returns an undefined tensor); SwapInMerged then installs it and returns the backup.
 */
at::Tensor ComputeMerge(at::Tensor weight, const std::vector<LoraFactors>& adapters, LoraKind kind, bool fanInFanOut, bool safe,
                        bool keepBackup);
at::Tensor SwapInMerged(at::Tensor weight, const at::Tensor& merged);

/** Points `weight` back at the storage `backup` holds (the pristine weight kept by MergeInto). */
void RestoreFrom(at::Tensor weight, const at::Tensor& backup);

}  // namespace tl
