/** Loss functions (`torch.nn.functional` equivalents). */
import { native } from "./binding";
import { describe } from "./errors";
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
