/** Deterministic pseudo-random inputs and central finite differences for the functional-op tests. */
import { Tensor, tensor } from "../../lib";

/** `n` values in [-1, 1) from a small LCG: the same on every run and in the Python reference. */
export function values(n: number, seed: number): number[] {
  let s = seed >>> 0;
  return Array.from({ length: n }, () => {
    s = (Math.imul(s, 22695477) + 1) >>> 0;
    return (s / 2 ** 32) * 2 - 1;
  });
}

/** A float64 tensor of `shape` filled by {@link values}. */
export function f64(shape: number[], seed: number, requiresGrad = false): Tensor {
  return tensor(
    values(
      shape.reduce((a, b) => a * b, 1),
      seed,
    ),
    { shape, dtype: "float64", requiresGrad },
  );
}

/** Central differences of the scalar function `f` with respect to each entry of `at`. */
export function numericGrad(f: (v: number[]) => number, at: number[], h = 1e-6): number[] {
  return at.map((_, i) => {
    const plus = at.slice();
    const minus = at.slice();
    plus[i] += h;
    minus[i] -= h;
    return (f(plus) - f(minus)) / (2 * h);
  });
}
