/**
 * Gradients against central finite differences, in float64: the analytic gradient of
 * `sum(f(x) · w)` (w fixed pseudo-random weights, so every output element counts differently)
 * against `(L(x + h·e_i) − L(x − h·e_i)) / 2h` for every element i.
 */
import { Tensor, noGrad, tensor } from "../../lib";
import { expectClose } from "./stats";

/** Deterministic pseudo-random values in (-2, 2), independent of libtorch's generator. */
export function pseudoRandom(n: number, seed: number): number[] {
  let s = seed >>> 0;
  return Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s / 2 ** 32) * 4 - 2;
  });
}

/** Checks the gradient of `f` at `values` (shaped `shape`) against finite differences. */
export function expectGradientMatchesFiniteDifferences(f: (x: Tensor) => Tensor, values: number[], shape: number[], tol = 1e-6): void {
  const x = tensor(values, { shape, dtype: "float64", requiresGrad: true });
  const y = f(x);
  const w = tensor(pseudoRandom(y.numel, 99), { shape: y.shape, dtype: "float64" });
  y.mul(w).sum().backward();
  expect(x.grad).not.toBeNull();
  const analytic = x.grad!.toList();
  const h = 1e-6;
  const loss = (v: number[]): number =>
    noGrad(() =>
      f(tensor(v, { shape, dtype: "float64" }))
        .mul(w)
        .sum()
        .item(),
    );
  const numeric = values.map((_, i) => {
    const plus = values.slice();
    const minus = values.slice();
    plus[i] += h;
    minus[i] -= h;
    return (loss(plus) - loss(minus)) / (2 * h);
  });
  expectClose(analytic, numeric, tol, tol);
}
