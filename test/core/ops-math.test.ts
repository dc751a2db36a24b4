/**
 * Math ops (sin, cos, rsqrt, silu, clamp, minimum, var, std, ne, ge, le, logsumexp, bmm):
 * values against PyTorch, gradients against finite differences.
 */
import { Tensor, tensor } from "../../lib";
import { expectGradientMatchesFiniteDifferences, pseudoRandom } from "../helpers/gradcheck";
import { CaseInput, describeAgainstTorch } from "../helpers/torch-cases";
import { ErrorCase, itThrowsEach } from "../helpers/errors";

const X = pseudoRandom(12, 11);
const inputs: Record<string, CaseInput> = {
  x: { values: X, shape: [3, 4], dtype: "float64" },
  y: { values: pseudoRandom(12, 12), shape: [3, 4], dtype: "float64" },
  pos: { values: X.map((v) => Math.abs(v) + 0.1), shape: [3, 4], dtype: "float64" },
  a: { values: pseudoRandom(24, 13), shape: [2, 3, 4], dtype: "float64" },
  b: { values: pseudoRandom(40, 14), shape: [2, 4, 5], dtype: "float64" },
  big: { values: [1000, 1001, -1000, 3], shape: [2, 2], dtype: "float64" },
  ints: { values: [1, 2, 3, 4], shape: [4], dtype: "int64" },
};

describeAgainstTorch("math ops against PyTorch", inputs, {
  sin: { js: ({ x }) => x.sin(), py: "x.sin()" },
  cos: { js: ({ x }) => x.cos(), py: "x.cos()" },
  rsqrt: { js: ({ pos }) => pos.rsqrt(), py: "pos.rsqrt()" },
  silu: { js: ({ x }) => x.silu(), py: "F.silu(x)" },
  clamp: { js: ({ x }) => x.clamp(-0.5, 0.5), py: "x.clamp(-0.5, 0.5)" },
  clampMin: { js: ({ x }) => x.clamp(0), py: "x.clamp(min=0)" },
  clampMax: { js: ({ x }) => x.clamp(null, 0.25), py: "x.clamp(max=0.25)" },
  clampTensor: { js: ({ x, y }) => x.clamp(y.slice(0, 0, 1), null), py: "x.clamp(min=y[0:1])" },
  clampInt: { js: ({ ints }) => ints.clamp(2, 3), py: "ints.clamp(2, 3)" },
  minimum: { js: ({ x, y }) => x.minimum(y), py: "torch.minimum(x, y)" },
  minimumNumber: { js: ({ x }) => x.minimum(0.5), py: "x.clamp_max(0.5)" },
  var: { js: ({ x }) => x.var(), py: "x.var()" },
  var1: { js: ({ x }) => x.var(1), py: "x.var(1)" },
  varPopulation: { js: ({ x }) => x.var(0, { unbiased: false, keepdim: true }), py: "x.var(0, unbiased=False, keepdim=True)" },
  varCorrection: { js: ({ a }) => a.var([0, 2], { correction: 0 }), py: "a.var([0, 2], correction=0)" },
  std: { js: ({ x }) => x.std(), py: "x.std()" },
  std0: { js: ({ x }) => x.std(0), py: "x.std(0)" },
  stdKeep: { js: ({ a }) => a.std(-1, { keepdim: true, unbiased: false }), py: "a.std(-1, unbiased=False, keepdim=True)" },
  ne: { js: ({ x, y }) => x.ne(y.maximum(x)), py: "x != torch.maximum(x, y)" },
  neNumber: { js: ({ ints }) => ints.ne(2), py: "ints != 2" },
  ge: { js: ({ x, y }) => x.ge(y), py: "x >= y" },
  geEqual: { js: ({ x }) => x.ge(x), py: "x >= x" },
  le: { js: ({ x }) => x.le(0), py: "x <= 0" },
  logsumexp: { js: ({ x }) => x.logsumexp(1), py: "x.logsumexp(1)" },
  logsumexpKeep: { js: ({ a }) => a.logsumexp([0, 2], true), py: "a.logsumexp([0, 2], keepdim=True)" },
  logsumexpLarge: { js: ({ big }) => big.logsumexp(-1), py: "big.logsumexp(-1)" },
  bmm: { js: ({ a, b }) => a.bmm(b), py: "torch.bmm(a, b)" },
});

describe("math ops: gradients match finite differences", () => {
  const y = () => tensor(pseudoRandom(12, 12), { shape: [3, 4], dtype: "float64" });
  const b = () => tensor(pseudoRandom(24, 15), { shape: [3, 4, 2], dtype: "float64" });
  const grads: [string, (x: Tensor) => Tensor][] = [
    ["sin", (x) => x.sin()],
    ["cos", (x) => x.cos()],
    ["rsqrt", (x) => x.mul(x).add(0.5).rsqrt()],
    ["silu", (x) => x.silu()],
    // Bounds away from the inputs: a kink under a finite difference is not differentiable.
    ["clamp", (x) => x.clamp(-0.75, 0.75)],
    ["clamp (tensor bound)", (x) => x.clamp(y().mul(0.9), null)],
    ["minimum", (x) => x.minimum(y())],
    ["var", (x) => x.var(1)],
    ["var (population, all)", (x) => x.var(null, { correction: 0 })],
    ["std", (x) => x.std(0)],
    ["logsumexp", (x) => x.logsumexp([0, 1])],
    ["bmm (first operand)", (x) => x.reshape([3, 1, 4]).bmm(b())],
    [
      "bmm (second operand)",
      (x) =>
        b()
          .permute(0, 2, 1)
          .bmm(x.reshape([3, 4, 1])),
    ],
  ];
  for (const [name, f] of grads) {
    it(name, () => expectGradientMatchesFiniteDifferences(f, X, [3, 4]));
  }
});

describe("math ops: hand-computed", () => {
  it("var and std of [1, 2, 3, 4]: 5/3 unbiased, 5/4 population", () => {
    const v = tensor([1, 2, 3, 4], { dtype: "float64" });
    expect(v.var().item()).toBeCloseTo(5 / 3, 14);
    expect(v.var(0, { unbiased: false }).item()).toBeCloseTo(5 / 4, 14);
    expect(v.std().item()).toBeCloseTo(Math.sqrt(5 / 3), 14);
  });
  it("logsumexp stays finite where exp overflows", () => {
    expect(tensor([1000, 1000], { dtype: "float64" }).logsumexp(0).item()).toBeCloseTo(1000 + Math.log(2), 10);
  });
  it("comparisons give bool tensors", () => {
    expect(tensor([1, 2, 3]).le(2).dtype).toBe("bool");
    expect(tensor([1, 2, 3]).ge(2).toList()).toEqual([0, 1, 1]);
    expect(
      tensor([1, 2, 3])
        .ne(tensor([1, 0, 3]))
        .toList(),
    ).toEqual([0, 1, 0]);
  });
});

describe("math ops: bad input names the op, the argument and the shapes", () => {
  const x = () => tensor(X, { shape: [3, 4] });
  const cases: ErrorCase[] = [
    ["clamp without bounds", () => x().clamp(), /^clamp: min, max: expected at least one bound, got neither/, TypeError],
    [
      "clamp with a non-broadcasting bound",
      () => x().clamp(tensor([0, 1])),
      /^clamp: cannot broadcast shapes \[3, 4\] and \[2\]: dim -1 \(from the end\) is 4 in self and 2 in min/,
      RangeError,
    ],
    ["minimum of shapes that do not broadcast", () => x().minimum(tensor([1, 2, 3])), /^minimum: cannot broadcast shapes \[3, 4\] and \[3\]/, RangeError],
    ["ne with a string", () => x().ne("1" as never), /^ne: other: expected a Tensor, got the string "1"/, TypeError],
    [
      "var with both correction and unbiased",
      () => x().var(0, { correction: 1, unbiased: true }),
      /^var: options: give correction or unbiased, not both/,
      TypeError,
    ],
    ["var with a negative correction", () => x().var(0, { correction: -1 }), /^var: correction: expected an integer >= 0, got -1/, RangeError],
    ["std along a missing dim", () => x().std(2), /^std: dim 2 is out of range for a tensor with 2 dims/, RangeError],
    ["logsumexp along a missing dim", () => x().logsumexp([0, 5]), /^logsumexp: dim 5 is out of range for a tensor with 2 dims/, RangeError],
    ["bmm of 2-D operands", () => x().bmm(x()), /^bmm: cannot multiply shapes \[3, 4\] and \[3, 4\]: both operands must be 3-D/, RangeError],
    [
      "bmm with different batch sizes",
      () =>
        x()
          .reshape([3, 1, 4])
          .bmm(x().reshape([1, 4, 3])),
      /^bmm: cannot multiply shapes \[3, 1, 4\] and \[1, 4, 3\]: the batch sizes \(3 and 1\) must be equal/,
      RangeError,
    ],
    [
      "bmm with mismatched inner dims",
      () =>
        x()
          .reshape([1, 3, 4])
          .bmm(x().reshape([1, 3, 4])),
      /^bmm: cannot multiply shapes \[1, 3, 4\] and \[1, 3, 4\]: the last dim of the first \(4\) must equal the second-to-last of the second \(3\)/,
      RangeError,
    ],
  ];
  itThrowsEach(cases);
});
