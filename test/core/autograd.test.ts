/**
 * Autograd: libtorch's gradients against central finite differences in float64, gradient
 * accumulation, noGrad's mode restoration, and backward's error cases.
 */
import { Tensor, crossEntropy, isGradEnabled, noGrad, tensor } from "../../lib";
import { expectClose } from "../helpers/stats";

function values(n: number, seed: number): number[] {
  let s = seed >>> 0;
  return Array.from({ length: n }, () => {
    s = (Math.imul(s, 22695477) + 1) >>> 0;
    return (s / 2 ** 32) * 2 - 1;
  });
}

/** Central differences of `f` with respect to each entry of `at` (step h). */
function numericGrad(f: (v: number[]) => number, at: number[], h = 1e-6): number[] {
  return at.map((_, i) => {
    const plus = at.slice();
    const minus = at.slice();
    plus[i] += h;
    minus[i] -= h;
    return (f(plus) - f(minus)) / (2 * h);
  });
}

const f64 = (v: number[], shape: number[], requiresGrad = false) => tensor(v, { shape, dtype: "float64", requiresGrad });

describe("gradients equal central finite differences (float64)", () => {
  const X = values(12, 11);
  const W = values(20, 12);
  // sum(tanh(x @ W)) + sum(sigmoid(x) * x)
  const expr = (x: Tensor, w: Tensor) => x.matmul(w).tanh().sum().add(x.sigmoid().mul(x).sum());
  const value = (xv: number[], wv: number[]) => noGrad(() => expr(f64(xv, [3, 4]), f64(wv, [4, 5])).item());

  it("sum(tanh(x@W)) + sum(sigmoid(x)·x) with respect to x and W", () => {
    const x = f64(X, [3, 4], true);
    const w = f64(W, [4, 5], true);
    expr(x, w).backward();
    expectClose(
      x.grad!.toList(),
      numericGrad((v) => value(v, W), X),
      1e-8,
    );
    expectClose(
      w.grad!.toList(),
      numericGrad((v) => value(X, v), W),
      1e-8,
    );
  });

  it("crossEntropy (mean, label smoothing, an ignored row) with respect to the logits", () => {
    const L = values(15, 13).map((v) => 3 * v);
    const target = () => tensor([2, 0, -100, 2, 1], { dtype: "int64" });
    const loss = (l: Tensor) => crossEntropy(l, target(), { labelSmoothing: 0.2 });
    const leaf = f64(L, [5, 3], true);
    loss(leaf).backward();
    const numeric = numericGrad((v) => noGrad(() => loss(f64(v, [5, 3])).item()), L);
    expectClose(leaf.grad!.toList(), numeric, 1e-8);
    // The ignored row (index 2) receives exactly zero gradient.
    expect(leaf.grad!.narrow(0, 2, 1).toList()).toEqual([0, 0, 0]);
  });

  it("softmax, logSoftmax, gelu, pow, div, mean through a non-trivial chain", () => {
    const A = values(8, 14);
    const chain = (a: Tensor) => a.softmax(1).mul(a.gelu()).div(a.abs().add(1)).pow(2).mean().add(a.logSoftmax(0).sum(0).max());
    const a = f64(A, [2, 4], true);
    chain(a).backward();
    expectClose(
      a.grad!.toList(),
      numericGrad((v) => noGrad(() => chain(f64(v, [2, 4])).item()), A),
      1e-8,
    );
  });
});

describe("gradient bookkeeping", () => {
  it("gradients accumulate over backward calls until cleared", () => {
    const x = tensor([1, 2, 3], { dtype: "float64", requiresGrad: true });
    x.mul(x).sum().backward(); // d/dx x² = 2x
    expect(x.grad!.toList()).toEqual([2, 4, 6]);
    x.mul(3).sum().backward();
    expect(x.grad!.toList()).toEqual([5, 7, 9]);
    x.grad = null;
    expect(x.grad).toBeNull();
    x.mul(3).sum().backward();
    expect(x.grad!.toList()).toEqual([3, 3, 3]);
  });

  it("a non-scalar output needs an explicit gradient; with one, it is a vector-Jacobian product", () => {
    const x = tensor([1, 2, 3], { requiresGrad: true });
    const y = x.mul(x);
    expect(() => y.backward()).toThrow(/backward\(\): a gradient is needed for a tensor of 3 elements/);
    y.backward(tensor([1, 0.5, -1]));
    expect(x.grad!.toList()).toEqual([2, 2, -6]);
  });

  it("backward twice through the same graph needs retainGraph", () => {
    const x = tensor([2], { requiresGrad: true });
    const y = x.mul(x).sum();
    y.backward(undefined, { retainGraph: true });
    y.backward();
    expect(x.grad!.toList()).toEqual([8]);
    expect(() => y.backward()).toThrow(/second time|already been freed/);
  });

  it("backward on a tensor that does not require grad is a clear error", () => {
    expect(() => tensor([1]).backward()).toThrow(/does not require grad/);
  });

  it("requiresGrad, isLeaf and detach", () => {
    const x = tensor([1, 2], { requiresGrad: true });
    const y = x.mul(2);
    expect(x.isLeaf).toBe(true);
    expect(y.isLeaf).toBe(false);
    expect(y.requiresGrad).toBe(true);
    expect(y.detach().requiresGrad).toBe(false);
    expect(() => (y.requiresGrad = false)).toThrow(/non-leaf/);
    const z = tensor([1]);
    z.requiresGrad = true;
    expect(z.requiresGrad).toBe(true);
  });
});

describe("noGrad", () => {
  it("disables recording inside and restores the mode afterwards", () => {
    const x = tensor([1, 2], { requiresGrad: true });
    expect(isGradEnabled()).toBe(true);
    const y = noGrad(() => {
      expect(isGradEnabled()).toBe(false);
      return x.mul(2);
    });
    expect(y.requiresGrad).toBe(false);
    expect(isGradEnabled()).toBe(true);
    expect(x.mul(2).requiresGrad).toBe(true);
  });

  it("restores the mode when fn throws, and nests", () => {
    expect(() =>
      noGrad(() => {
        throw new Error("boom");
      }),
    ).toThrow("boom");
    expect(isGradEnabled()).toBe(true);
    noGrad(() => {
      noGrad(() => expect(isGradEnabled()).toBe(false));
      expect(isGradEnabled()).toBe(false);
      expect(() => noGrad(() => tensor([1]).matmul(tensor([1, 2, 3]).reshape([3, 1])))).toThrow();
      expect(isGradEnabled()).toBe(false);
    });
    expect(isGradEnabled()).toBe(true);
  });
});
