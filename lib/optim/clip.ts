/** Gradient clipping by total norm, as torch.nn.utils.clip_grad_norm_. */
import type { Tensor } from "../tensor";
import { describe } from "../errors";
import { flag, options as checkOptions } from "./checks";
import { optimNative } from "./native";
import { handleOf } from "../tensor";

/**
 * Scales the gradients of `params` in place so that their total norm is at most `maxNorm`, in
 * one native call. The total norm is the `normType`-norm of the per-tensor norms (the maximum
 * absolute value for `Infinity`); every gradient is multiplied by `min(1, maxNorm / (total + 1e-6))`.
 * Parameters without a gradient are ignored.
 *
 * @param params Tensors whose `grad` to clip.
 * @param maxNorm Largest allowed total norm (finite, >= 0).
 * @param normType Order of the norm: a number > 0, or `Infinity` (default 2).
 * @param options `errorIfNonfinite`: throw (changing nothing) when the total norm is NaN or infinite (default false).
 * @returns The total norm of the gradients before clipping (0 when none has a gradient).
 */
export function clipGradNorm(params: Tensor[] | Iterable<Tensor>, maxNorm: number, normType = 2, options: { errorIfNonfinite?: boolean } = {}): number {
  if (params === null || typeof params !== "object" || !(Symbol.iterator in params)) {
    throw new TypeError(`params: expected an array or iterable of Tensors, got ${describe(params)}`);
  }
  const handles = Array.from(params, (t, i) => handleOf(t, `params[${i}]`));
  if (typeof maxNorm !== "number" || !Number.isFinite(maxNorm) || maxNorm < 0) {
    throw new RangeError(`maxNorm: expected a finite number >= 0, got ${describe(maxNorm)}`);
  }
  if (typeof normType !== "number" || !(normType > 0)) {
    throw new RangeError(`normType: expected a number > 0 or Infinity, got ${describe(normType)}`);
  }
  const o = checkOptions<{ errorIfNonfinite: boolean }>(options, ["errorIfNonfinite"], "options");
  const errorIfNonfinite = flag(o.errorIfNonfinite ?? false, "options.errorIfNonfinite");
  // With errorIfNonfinite the native call leaves the gradients alone when the total is non-finite.
  const total = optimNative.clipGradNorm({ params: handles, maxNorm, normType, errorIfNonfinite });
  if (errorIfNonfinite && !Number.isFinite(total)) {
    throw new Error(`clipGradNorm: the total norm of order ${normType} of the gradients is non-finite, so they cannot be clipped (nothing was changed)`);
  }
  return total;
}
