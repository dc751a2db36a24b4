/** Scaled dot-product attention (`torch.nn.functional.scaled_dot_product_attention`). */
import { native } from "./binding";
import { isFloatingDtype } from "./dtype";
import { describe } from "./errors";
import { broadcastsTo, checkSameDevice, checkSameDtype, optionalTensorArg, shapeText, tensorArg, withOpChecks } from "./op-checks";
import { Tensor, handleOf, optionsObject } from "./tensor";

/** Options of {@link scaledDotProductAttention}. */
export interface AttentionOptions {
  /** Mask each query `i` to keys `j <= i` (top-left aligned when T != S, as PyTorch). */
  causal?: boolean;
  /**
   * Broadcastable to `(..., H, T, S)`: boolean (true = attend) or floating-point (added to the
   * scores; it gets a gradient when it requires one). With `causal`, both apply.
   */
  mask?: Tensor | null;
  /** Dropout probability on the attention weights, in [0, 1); applied as given (pass 0 in eval). */
  dropoutP?: number;
  /** Multiplies q·kᵀ; default `1 / sqrt(E)`. */
  scale?: number;
}

const OP = "scaledDotProductAttention";

/** The worded checks behind a failed attention call. */
function explain(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | null): void {
  const [qs, ks, vs] = [q.shape, k.shape, v.shape];
  const all = `query ${shapeText(qs)}, key ${shapeText(ks)}, value ${shapeText(vs)}`;
  if (qs.length < 3 || ks.length !== qs.length || vs.length !== qs.length) {
    throw new RangeError(`${OP}: expected query (..., H, T, E), key (..., Hkv, S, E) and value (..., Hkv, S, Ev) of the same rank >= 3, got ${all}`);
  }
  if (qs.slice(0, -3).join() !== ks.slice(0, -3).join() || qs.slice(0, -3).join() !== vs.slice(0, -3).join()) {
    throw new RangeError(`${OP}: the batch dims (all but the last 3) must be equal, got ${all}`);
  }
  const [H, Hkv] = [qs.at(-3)!, ks.at(-3)!];
  if (vs.at(-3) !== Hkv || Hkv < 1 || H % Hkv !== 0) {
    throw new RangeError(`${OP}: key and value heads (dim -3) must be equal and divide the query heads (grouped-query attention), got ${all}`);
  }
  if (ks.at(-1) !== qs.at(-1)) throw new RangeError(`${OP}: key: expected last dim ${qs.at(-1)} (the query's E), got ${all}`);
  if (vs.at(-2) !== ks.at(-2)) throw new RangeError(`${OP}: value: expected ${ks.at(-2)} positions (the key's S, dim -2), got ${all}`);
  if ([...qs, ...ks, ...vs].includes(0)) throw new RangeError(`${OP}: query, key and value must not be empty, got ${all}`);
  if (!isFloatingDtype(q.dtype)) throw new TypeError(`${OP}: query: expected a floating-point tensor, got dtype ${q.dtype}`);
  checkSameDtype(OP, [
    ["query", q],
    ["key", k],
    ["value", v],
  ]);
  checkSameDevice(OP, [
    ["query", q],
    ["key", k],
    ["value", v],
    ["mask", mask],
  ]);
  if (mask) {
    const scores = [...qs.slice(0, -1), ks.at(-2)!];
    if (!broadcastsTo(mask.shape, scores)) {
      throw new RangeError(`${OP}: mask: shape ${shapeText(mask.shape)} does not broadcast to the scores (..., H, T, S) = ${shapeText(scores)}`);
    }
    if (mask.dtype !== "bool" && !isFloatingDtype(mask.dtype)) {
      throw new TypeError(`${OP}: mask: expected a boolean (true = attend) or floating-point (additive) tensor, got dtype ${mask.dtype}`);
    }
  }
}

/**
 * Attention as PyTorch 2's `F.scaled_dot_product_attention`:
 * `softmax(q kᵀ · scale + mask) v`, as ONE native call with its own fused backward.
 *
 * Shapes: `q (..., H, T, E)`, `k (..., Hkv, S, E)`, `v (..., Hkv, S, Ev)` → `(..., H, T, Ev)`.
 * Grouped-query attention when `Hkv < H` (H a multiple of Hkv): query head `h` uses key/value
 * head `floor(h / (H / Hkv))`, as Llama's `repeat_kv`, without copying k and v.
 *
 * A query row that may attend to no key at all (fully masked) gives zeros and zero gradients,
 * as PyTorch's math path does since 2.5 (earlier PyTorch returned NaN there).
 *
 * @example
 * const y = scaledDotProductAttention(q, k, v, { causal: true });
 */
export function scaledDotProductAttention(q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions = {}): Tensor {
  optionsObject(options);
  tensorArg(OP, "query", q);
  tensorArg(OP, "key", k);
  tensorArg(OP, "value", v);
  const mask = optionalTensorArg(OP, "mask", options.mask);
  const causal = options.causal ?? false;
  if (typeof causal !== "boolean") throw new TypeError(`${OP}: causal: expected a boolean, got ${describe(causal)}`);
  const dropoutP = options.dropoutP ?? 0;
  if (typeof dropoutP !== "number" || !(dropoutP >= 0 && dropoutP < 1))
    throw new RangeError(`${OP}: dropoutP: expected a probability in [0, 1), got ${describe(dropoutP)}`);
  let scale = options.scale;
  if (scale !== undefined && (typeof scale !== "number" || !Number.isFinite(scale)))
    throw new TypeError(`${OP}: scale: expected a finite number, got ${describe(scale)}`);
  scale ??= 1 / Math.sqrt(q.shape.at(-1) ?? 1);
  return withOpChecks(
    OP,
    () =>
      new Tensor(
        native.scaledDotProductAttention({
          query: handleOf(q),
          key: handleOf(k),
          value: handleOf(v),
          mask: mask && handleOf(mask),
          causal,
          dropoutP,
          scale: scale!,
        }),
      ),
    () => explain(q, k, v, mask),
  );
}
