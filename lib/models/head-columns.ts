/**
 * The output head's weight stored transposed for decoding on the CPU. A decoding step multiplies
 * one hidden row by the whole `(V, d)` head: over rows of 256 to 768 floats, OpenBLAS's gemv
 * measured 2.2× slower than over the `(d, V)` layout's long columns (GPT-2's head at d 256:
 * 2.35 vs 1.06 ms), and at a large vocabulary that product is most of the step. The transposed
 * copy costs one head's memory and about 20 ms to make, so it is kept between calls and made
 * again only when the head's weight is another tensor or was written since (libtorch's version
 * counter, which every in-place op, file read and collective of this library moves on).
 */
import { native } from "../binding";
import type { Linear } from "../nn/layers";
import { keep, tidy } from "../scope";
import { Tensor, handleOf, noGrad } from "../tensor";
import { isPlainHead } from "./head";

/** Whether `head` is a plain fp32 Linear on the CPU, the case the transposed layout speeds up. */
export function transposableHead(head: unknown): head is Linear {
  if (!isPlainHead(head)) return false;
  const { weight } = head;
  return weight.device === "cpu" && weight.dtype === "float32" && weight.ndim === 2;
}

/** One model's transposed head, `(d, V)` contiguous, and what it was made from. */
export class HeadColumns {
  /** Weakly held: a replaced weight must not stay alive for this cache's sake. */
  #source: WeakRef<Tensor> | null = null;
  #version = -1;
  #columns: Tensor | null = null;

  /** The transposed copy of `weight` (owned here: do not dispose it), made again when stale. */
  of(weight: Tensor): Tensor {
    const version = native.version(handleOf(weight));
    if (this.#columns && this.#source?.deref() === weight && this.#version === version) return this.#columns;
    this.release();
    // kept: a caller's tidy() must not free what outlives the call
    this.#columns = keep(noGrad(() => tidy(() => weight.transpose(0, 1).contiguous())));
    this.#source = new WeakRef(weight);
    this.#version = version;
    return this.#columns;
  }

  /** Frees the copy (the next {@link of} makes it again). */
  release(): void {
    this.#columns?.dispose();
    this.#columns = null;
    this.#source = null;
  }
}
