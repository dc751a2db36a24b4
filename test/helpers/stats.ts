/** Plain-JS statistics over tensor values, computed independently of libtorch. */
import { Tensor } from "../../lib";

/** Sample mean and (population) standard deviation, accumulated in float64. */
export function meanStd(t: Tensor): { mean: number; std: number; min: number; max: number } {
  const v = t.toArray() as Float32Array | Float64Array;
  let sum = 0;
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < v.length; i++) {
    sum += v[i];
    if (v[i] < min) min = v[i];
    if (v[i] > max) max = v[i];
  }
  const mean = sum / v.length;
  let sq = 0;
  for (let i = 0; i < v.length; i++) sq += (v[i] - mean) ** 2;
  return { mean, std: Math.sqrt(sq / v.length), min, max };
}

/** Elementwise closeness of two flat number arrays, with an informative failure. */
export function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, atol: number, rtol = 0): void {
  expect(actual.length).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    const diff = Math.abs(actual[i] - expected[i]);
    if (!(diff <= atol + rtol * Math.abs(expected[i])) && !(Number.isNaN(actual[i]) && Number.isNaN(expected[i]))) {
      throw new Error(`element ${i}: got ${actual[i]}, expected ${expected[i]} (|diff| ${diff} > ${atol} + ${rtol}·|expected|)`);
    }
  }
}

/** The largest |a − b| over all elements, computed in float64 (so float32 rounding does not hide or add a difference). */
export function maxAbsDiff(a: Tensor, b: Tensor): number {
  return a
    .to({ dtype: "float64" })
    .sub(b.to({ dtype: "float64" }))
    .abs()
    .max()
    .item();
}

/** A tensor's values as float64 JS numbers, detached from autograd. */
export function valuesOf(t: Tensor): number[] {
  return Array.from(t.detach().to({ dtype: "float64" }).toArray() as Float64Array);
}
