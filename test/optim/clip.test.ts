import { optim, Tensor } from "../../lib";
import { maxAbsDiff, param, setGrad } from "./helpers";

function grads(ps: Tensor[]): (number[] | null)[] {
  return ps.map((p) => p.grad?.toList() ?? null);
}

describe("clipGradNorm", () => {
  test("2-norm over all gradients, scaled by maxNorm / (total + 1e-6)", () => {
    const a = param([0, 0], [2], "float64");
    const b = param([0], [1], "float64");
    const c = param([0, 0, 0], [3], "float64"); // no gradient: ignored
    setGrad(a, [3, 4]);
    setGrad(b, [12]);
    const total = optim.clipGradNorm([a, b, c], 6.5);
    expect(total).toBe(13); // sqrt(3² + 4² + 12²)
    const coef = 6.5 / (13 + 1e-6);
    expect(maxAbsDiff(a.grad!.toList(), [3 * coef, 4 * coef])).toBeLessThan(1e-15);
    expect(maxAbsDiff(b.grad!.toList(), [12 * coef])).toBeLessThan(1e-15);
    expect(c.grad).toBeNull();
  });

  test("other norm orders: 1, 3 and Infinity", () => {
    const g = [
      [0.5, -2],
      [1.5, 0.25, -1],
    ];
    const cases: [number, number][] = [
      [1, 0.5 + 2 + 1.5 + 0.25 + 1],
      [3, Math.cbrt(0.125 + 8 + 3.375 + 0.015625 + 1)],
      [Infinity, 2],
    ];
    for (const [normType, expected] of cases) {
      const ps = [param([0, 0], [2], "float64"), param([0, 0, 0], [3], "float64")];
      ps.forEach((p, k) => setGrad(p, g[k]));
      const total = optim.clipGradNorm(ps, 1, normType);
      expect(Math.abs(total - expected)).toBeLessThan(1e-12);
      const coef = Math.min(1, 1 / (expected + 1e-6));
      ps.forEach((p, k) =>
        expect(
          maxAbsDiff(
            p.grad!.toList(),
            g[k].map((v) => v * coef),
          ),
        ).toBeLessThan(1e-12),
      );
    }
  });

  test("gradients below the limit are left as they are; no gradients give 0", () => {
    const p = param([0, 0], [2]);
    setGrad(p, [0.3, -0.4]);
    const before = Buffer.from(p.grad!.toBytes());
    expect(optim.clipGradNorm([p], 1)).toBeCloseTo(0.5, 6);
    expect(p.grad!.toBytes().equals(before)).toBe(true);
    expect(optim.clipGradNorm([param([1], [1])], 1)).toBe(0);
  });

  test("a non-finite norm: scaled anyway by default, an error that changes nothing with errorIfNonfinite", () => {
    const p = param([0, 0], [2]);
    setGrad(p, [Infinity, 1]);
    const before = Buffer.from(p.grad!.toBytes());
    expect(() => optim.clipGradNorm([p], 1, 2, { errorIfNonfinite: true })).toThrow(/non-finite/);
    expect(p.grad!.toBytes().equals(before)).toBe(true);
    expect(optim.clipGradNorm([p], 1)).toBe(Infinity);
    expect(p.grad!.toList()[1]).toBe(0); // 1 · 1/(inf + 1e-6)
  });

  test("bad arguments are clear errors and change nothing", () => {
    const p = param([0, 0], [2]);
    setGrad(p, [3, 4]);
    const before = Buffer.from(p.grad!.toBytes());
    expect(() => optim.clipGradNorm([p], -1)).toThrow("maxNorm: expected a finite number >= 0, got -1");
    expect(() => optim.clipGradNorm([p], NaN)).toThrow(/maxNorm/);
    expect(() => optim.clipGradNorm([p], 1, 0)).toThrow("normType: expected a number > 0 or Infinity, got 0");
    expect(() => optim.clipGradNorm([p], 1, NaN)).toThrow(/normType/);
    expect(() => optim.clipGradNorm([p, 3 as unknown as Tensor], 1)).toThrow("params[1]: expected a Tensor, got 3");
    expect(() => optim.clipGradNorm(p as unknown as Tensor[], 1)).toThrow(/params: expected an array or iterable of Tensors/);
    expect(() => optim.clipGradNorm([p], 1, 2, { error_if_nonfinite: true } as never)).toThrow(/unknown option "error_if_nonfinite"/);
    expect(p.grad!.toBytes().equals(before)).toBe(true);
  });
});

describe("clipGradNorm argument checks, one by one (each message names the argument and what it got)", () => {
  const p = param([0, 0], [2]);
  test.each([
    ["params null", () => optim.clipGradNorm(null as never, 1), TypeError, "params: expected an array or iterable of Tensors, got null"],
    ["params a number", () => optim.clipGradNorm(5 as never, 1), TypeError, "params: expected an array or iterable of Tensors, got 5"],
    ["maxNorm a string", () => optim.clipGradNorm([p], "1" as never), RangeError, 'maxNorm: expected a finite number >= 0, got the string "1"'],
    ["maxNorm Infinity", () => optim.clipGradNorm([p], Infinity), RangeError, "maxNorm: expected a finite number >= 0, got Infinity"],
    ["maxNorm NaN", () => optim.clipGradNorm([p], NaN), RangeError, "maxNorm: expected a finite number >= 0, got NaN"],
    ["normType a string", () => optim.clipGradNorm([p], 1, "2" as never), RangeError, 'normType: expected a number > 0 or Infinity, got the string "2"'],
    ["normType NaN", () => optim.clipGradNorm([p], 1, NaN), RangeError, "normType: expected a number > 0 or Infinity, got NaN"],
    [
      "an unknown option",
      () => optim.clipGradNorm([p], 1, 2, { bogus: 1 } as never),
      TypeError,
      'options: unknown option "bogus"; known options are errorIfNonfinite',
    ],
    [
      "errorIfNonfinite not a boolean",
      () => optim.clipGradNorm([p], 1, 2, { errorIfNonfinite: "yes" as never }),
      TypeError,
      'options.errorIfNonfinite: expected a boolean, got the string "yes"',
    ],
  ] as const)("%s", (_label, call, type, message) => {
    expect(call).toThrow(type);
    expect(call).toThrow(new RegExp(`^${message.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`));
  });

  test("maxNorm 0 is allowed: every gradient becomes 0, and the norm before clipping is returned", () => {
    const q = param([0, 0], [2]);
    setGrad(q, [3, 4]);
    expect(optim.clipGradNorm([q], 0)).toBeCloseTo(5, 5);
    expect(grads([q])).toEqual([[0, 0]]);
  });
});

describe("zeroGrad", () => {
  test("setToNone (default) drops gradients; false zeroes them in place", () => {
    const a = param([1, 2], [2]);
    const b = param([3], [1]);
    const opt = new optim.SGD([a, b], { lr: 0.1 });
    setGrad(a, [5, 6]);
    setGrad(b, [7]);
    opt.zeroGrad(false);
    expect(grads([a, b])).toEqual([[0, 0], [0]]);
    opt.zeroGrad();
    expect(grads([a, b])).toEqual([null, null]);
    opt.zeroGrad(); // nothing to clear is fine
    expect(() => opt.zeroGrad("yes" as unknown as boolean)).toThrow('setToNone: expected a boolean, got the string "yes"');
  });
});
