/**
 * `torch.nn.functional` equivalents: losses, embedding lookup, and (re-exported from their own
 * modules) normalization and attention.
 */
import { native } from "./binding";
import { describe } from "./errors";
import { shapeText, tensorArg, withOpChecks } from "./op-checks";
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
 * Cross-entropy between logits and int64 class indices, with PyTorch's shapes: input `(C)` with
 * target `()`, input `(N, C)` with target `(N)`, or input `(N, C, d1, …, dk)` with target
 * `(N, d1, …, dk)`. The class scores are in dim 1: per-token logits `(B, T, V)` need
 * `logits.reshape([-1, V])` and `target.reshape([-1])` (or `logits.transpose(1, 2)`).
 * Targets equal to `ignoreIndex` (default -100) do not count; `labelSmoothing` is in [0, 1].
 */
export function crossEntropy(logits: Tensor, target: Tensor, options: { reduction?: Reduction; ignoreIndex?: number; labelSmoothing?: number } = {}): Tensor {
  optionsObject(options);
  const input = handleOf(logits, "input");
  const classes = handleOf(target, "target");
  checkCrossEntropyShapes(logits.shape, target.shape);
  const reduction = reductionOf(options.reduction);
  if (target.dtype !== "int64") throw new TypeError(`target: expected class indices of dtype int64, got ${target.dtype}`);
  const labelSmoothing = options.labelSmoothing ?? 0;
  // ATen's own range check lets NaN through.
  if (typeof labelSmoothing === "number" && !(labelSmoothing >= 0 && labelSmoothing <= 1))
    throw new RangeError(`labelSmoothing: expected a number in [0, 1], got ${describe(labelSmoothing)}`);
  return new Tensor(native.crossEntropy({ input, target: classes, reduction, ignoreIndex: options.ignoreIndex ?? -100, labelSmoothing }));
}

/** Throws a RangeError naming both shapes unless `target` fits `input` as PyTorch's cross_entropy reads them. */
function checkCrossEntropyShapes(input: readonly number[], target: readonly number[]): void {
  const text = (s: readonly number[]): string => `[${s.join(", ")}]`;
  if (input.length === 0) throw new RangeError("input: expected logits of shape (C), (N, C) or (N, C, d…), got a 0-d tensor");
  const expected = input.length === 1 ? [] : [input[0], ...input.slice(2)];
  if (expected.join() === target.join() && expected.length === target.length) return;
  const [b, t, v] = input;
  if (input.length === 3 && target.length === 2 && target[0] === b && target[1] === t) {
    throw new RangeError(
      `crossEntropy: input ${text(input)} with target ${text(target)} reads as (B, T, V) logits, but class scores must be in dim 1: ` +
        `(N, C) with target (N), or (N, C, d…) with target (N, d…), as in PyTorch. ` +
        `Reshape to (B*T, V): crossEntropy(logits.reshape([-1, ${v}]), target.reshape([-1])), or use logits.transpose(1, 2)`,
    );
  }
  throw new RangeError(
    `target: expected shape ${text(expected)} for input of shape ${text(input)} ((N, C) takes target (N); (N, C, d…) takes (N, d…)), got ${text(target)}`,
  );
}

/** Mean squared error. `input` and `target` must have the same shape (no silent broadcasting). */
export function mseLoss(input: Tensor, target: Tensor, options: { reduction?: Reduction } = {}): Tensor {
  optionsObject(options);
  const inputHandle = handleOf(input, "input");
  const targetHandle = handleOf(target, "target");
  // PyTorch only warns and broadcasts here, which silently computes the wrong loss.
  if (input.shape.join() !== target.shape.join() || input.ndim !== target.ndim) {
    throw new RangeError(`target: expected the shape of input ${shapeText(input.shape)}, got ${shapeText(target.shape)}`);
  }
  return new Tensor(native.mseLoss(inputHandle, targetHandle, reductionOf(options.reduction)));
}

export { layerNorm, rmsNorm } from "./norm";
export { scaledDotProductAttention } from "./attention";
export type { AttentionOptions } from "./attention";
export { linearCrossEntropy } from "./linear-cross-entropy";
export type { LinearCrossEntropyOptions } from "./linear-cross-entropy";

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
  return withOpChecks(
    "embedding",
    () => new Tensor(native.embedding(handleOf(ids, "ids"), handleOf(weight, "weight"), pad)),
    () => {},
  );
}
