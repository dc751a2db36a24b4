/**
 * The loss of a classifier head without its logits: `crossEntropy(linear(hidden, weight, bias), target)`
 * computed chunk by chunk, as a language model's training step wants at a large vocabulary.
 */
import { native } from "./binding";
import { isFloatingDtype } from "./dtype";
import { describe } from "./errors";
import { checkSameDevice, checkSameDtype, optionalTensorArg, shapeText, tensorArg } from "./op-checks";
import { Tensor, handleOf, optionsObject } from "./tensor";

/** Options of {@link linearCrossEntropy}. */
export interface LinearCrossEntropyOptions {
  /** `(V)`, added to the logits. Default: none. */
  bias?: Tensor | null;
  /** Targets equal to this do not count (PyTorch's default, -100). */
  ignoreIndex?: number;
  /**
   * Rows of `hidden` whose logits are held at once. Default: as many as make about 8M logits
   * (32 MB in fp32, 166 rows at GPT-2's vocabulary): large enough for the head's GEMMs to run at
   * full speed, small enough to stay far below the `(N, V)` block.
   */
  chunkRows?: number;
}

const OP = "linearCrossEntropy";
/**
 * Logits per chunk by default. GPT-2's head over 1016 rows, forward and backward, measured best
 * from 128 to 192 rows per chunk (8 to 10M logits); 32 rows were 40 % slower, the whole block 10 %.
 */
const CHUNK_LOGITS = 1 << 23;

/**
 * Mean cross-entropy of `linear(hidden, weight, bias)` against class indices, the same number
 * as `crossEntropy(linear(hidden, weight, bias).to("float32"), target, { ignoreIndex })`, without
 * allocating the `(N, V)` logits: the rows go through in chunks, and each chunk's logits become
 * their gradient in place and are multiplied back into the gradients of `hidden`, `weight` and
 * `bias` (those that require one) at once. The softmax runs in float32 (float64 for float64
 * inputs); half-precision inputs are multiplied in their own dtype, as the unfused graph does.
 *
 * The gradient is computed during this call when autograd records it (so a call that is never
 * backpropagated still pays for it; wrap evaluation in `noGrad`), and backward only scales it.
 * The result is a scalar; targets that all equal `ignoreIndex` give NaN, as `crossEntropy` does.
 * It is differentiable once: its gradient has no graph of its own.
 *
 * @param hidden `(N, d)` floating-point rows.
 * @param weight `(V, d)`, as a Linear layer stores it (a tied embedding's table, say).
 * @param target `(N)` int64 classes in `[0, V)` or `ignoreIndex`.
 * @example const loss = linearCrossEntropy(hidden.reshape([-1, d]), lmHead.weight, labels.reshape([-1]));
 */
export function linearCrossEntropy(hidden: Tensor, weight: Tensor, target: Tensor, options: LinearCrossEntropyOptions = {}): Tensor {
  optionsObject(options);
  tensorArg(OP, "hidden", hidden);
  tensorArg(OP, "weight", weight);
  tensorArg(OP, "target", target);
  const bias = optionalTensorArg(OP, "bias", options.bias);
  if (hidden.ndim !== 2 || !isFloatingDtype(hidden.dtype))
    throw new TypeError(`${OP}: hidden: expected a floating-point tensor (N, d), got ${hidden.dtype} of shape ${shapeText(hidden.shape)}`);
  const [N, d] = hidden.shape;
  if (weight.ndim !== 2 || weight.shape[1] !== d)
    throw new RangeError(`${OP}: weight: expected shape (V, ${d}) for hidden of shape ${shapeText(hidden.shape)}, got ${shapeText(weight.shape)}`);
  const V = weight.shape[0];
  if (bias && (bias.ndim !== 1 || bias.shape[0] !== V)) throw new RangeError(`${OP}: bias: expected shape [${V}], got ${shapeText(bias.shape)}`);
  if (target.dtype !== "int64" || target.ndim !== 1 || target.shape[0] !== N)
    throw new TypeError(`${OP}: target: expected int64 class indices of shape [${N}], got ${target.dtype} of shape ${shapeText(target.shape)}`);
  checkSameDtype(OP, [
    ["hidden", hidden],
    ["weight", weight],
    ["bias", bias],
  ]);
  checkSameDevice(OP, [
    ["hidden", hidden],
    ["weight", weight],
    ["bias", bias],
    ["target", target],
  ]);
  const ignoreIndex = options.ignoreIndex ?? -100;
  if (!Number.isSafeInteger(ignoreIndex)) throw new TypeError(`${OP}: ignoreIndex: expected an integer, got ${describe(options.ignoreIndex)}`);
  const chunkRows = options.chunkRows ?? Math.max(1, Math.floor(CHUNK_LOGITS / Math.max(V, 1)));
  if (!Number.isInteger(chunkRows) || chunkRows < 1 || chunkRows > 2 ** 31 - 1)
    throw new RangeError(`${OP}: chunkRows: expected a positive integer, got ${describe(options.chunkRows)}`);
  return new Tensor(
    native.linearCrossEntropy({
      hidden: handleOf(hidden),
      weight: handleOf(weight),
      bias: bias && handleOf(bias),
      target: handleOf(target),
      ignoreIndex,
      chunkRows,
    }),
  );
}
