/**
 * `torch.nn.functional` equivalents: losses, embedding lookup, and (re-exported from their own
 * modules) normalization and attention.
 */
import { native } from "./binding";
import { describe } from "./errors";
import { tensorArg, withOpChecks } from "./op-checks";
import { Tensor, handleOf, optionsObject } from "./tensor";

/** How a loss reduces over elements. */
export type Reduction = "mean" | "sum" | "none";

function reductionOf(value: unknown): Reduction {
  if (value === undefined) return "mean";
  if (value !== "mean" && value !== "sum" && value !== "none") {
    throw new TypeError(`reduction: expected "mean", "sum" or "none", got ${describe(value)}`);
  }
  return value;
}

/**
 * Cross-entropy between logits `(N, C)` and int64 class indices `(N)`.
 * Targets equal to `ignoreIndex` (default -100) do not count; `labelSmoothing` is in [0, 1].
 */
export function crossEntropy(
  logits: Tensor,
  target: Tensor,
  options: { reduction?: Reduction; ignoreIndex?: number; labelSmoothing?: number } = {},
): Tensor {
  optionsObject(options);
  return new Tensor(
    native.crossEntropy(handleOf(logits, "input"), handleOf(target, "target"), reductionOf(options.reduction), options.ignoreIndex ?? -100, options.labelSmoothing ?? 0),
  );
}

/** Mean squared error. `input` and `target` must have the same shape (no silent broadcasting). */
export function mseLoss(input: Tensor, target: Tensor, options: { reduction?: Reduction } = {}): Tensor {
  optionsObject(options);
  return new Tensor(native.mseLoss(handleOf(input, "input"), handleOf(target, "target"), reductionOf(options.reduction)));
}

export { layerNorm, rmsNorm } from "./norm";
export { scaledDotProductAttention } from "./attention";
export type { AttentionOptions } from "./attention";

/**
 * Looks up rows of `weight (V, d)` for integer `ids` of any shape, giving `(...ids, d)`
 * (PyTorch's `F.embedding`). The row at `paddingIdx` (negative counts from the end) gets no
 * gradient.
 */
export function embedding(ids: Tensor, weight: Tensor, options: { paddingIdx?: number | null } = {}): Tensor {
  optionsObject(options);
  tensorArg("embedding", "weight", weight);
  const paddingIdx = options.paddingIdx ?? null;
  let pad = -1;
  if (paddingIdx !== null) {
    const rows = weight.shape[0] ?? 0;
    if (!Number.isInteger(paddingIdx) || paddingIdx >= rows || paddingIdx < -rows) {
      throw new RangeError(`embedding: paddingIdx: expected an integer in [${-rows}, ${rows - 1}], got ${describe(paddingIdx)}`);
    }
    pad = paddingIdx < 0 ? paddingIdx + rows : paddingIdx;
  }
  return withOpChecks("embedding", () => new Tensor(native.embedding(handleOf(ids, "ids"), handleOf(weight, "weight"), pad)), () => {});
}
