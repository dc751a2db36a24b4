/**
 * Indexing and selection (where, maskedFill, triu/tril, gather, scatterAdd, indexAdd, oneHot,
 * topk, sort, cumsum, multinomial): values against PyTorch, gradients against finite
 * differences, multinomial's draws against their probabilities and its seeding.
 */
import { Tensor, manualSeed, oneHot, tensor, where } from "../../lib";
import { expectGradientMatchesFiniteDifferences, pseudoRandom } from "../helpers/gradcheck";
import { CaseInput, describeAgainstTorch } from "../helpers/torch-cases";
import { ErrorCase, itThrowsEach } from "../helpers/errors";

const X = pseudoRandom(12, 5);
const inputs: Record<string, CaseInput> = {
  x: { values: X, shape: [3, 4], dtype: "float64" },
  y: { values: pseudoRandom(12, 6), shape: [3, 4], dtype: "float64" },
  m: { values: X.map((v) => (v > 0 ? 1 : 0)), shape: [3, 4], dtype: "bool" },
  row: { values: [1, 0, 0, 1], shape: [4], dtype: "bool" },
  idx: { values: [0, 2, 1, 2, 1, 0, 0, 0], shape: [2, 4], dtype: "int64" },
  cls: { values: [2, 0, 3, 3, 1], shape: [5], dtype: "int64" },
  rows: { values: [2, 0, 2], shape: [3], dtype: "int64" },
  src: { values: pseudoRandom(8, 7), shape: [2, 4], dtype: "float64" },
  ties: { values: [3, 1, 3, 2, 1, 3], shape: [6], dtype: "float64" },
  ints: { values: [1, 2, 3, 4, 5, 6], shape: [2, 3], dtype: "int64" },
};

describeAgainstTorch("indexing and selection against PyTorch", inputs, {
  where: { js: ({ m, x, y }) => where(m, x, y), py: "torch.where(m, x, y)" },
  whereBroadcast: { js: ({ row, x, y }) => where(row, x, y.slice(0, 0, 1)), py: "torch.where(row, x, y[0:1])" },
  whereScalar: { js: ({ m, x }) => where(m, x, 0), py: "torch.where(m, x, torch.tensor(0.0))" },
  maskedFill: { js: ({ x, m }) => x.maskedFill(m, -1.5), py: "x.masked_fill(m, -1.5)" },
  maskedFillInf: { js: ({ x, row }) => x.maskedFill(row, -Infinity).softmax(-1), py: "x.masked_fill(row, float('-inf')).softmax(-1)" },
  triu: { js: ({ x }) => x.triu(), py: "x.triu()" },
  triu1: { js: ({ x }) => x.triu(1), py: "x.triu(1)" },
  tril: { js: ({ x }) => x.tril(), py: "x.tril()" },
  trilNeg: { js: ({ x }) => x.tril(-1), py: "x.tril(-1)" },
  causal: { js: ({ x }) => x.maskedFill(x.mul(0).add(1).triu(1).ne(0), -Infinity), py: "x.masked_fill(torch.ones(3, 4).triu(1).bool(), float('-inf'))" },
  gather0: { js: ({ x, idx }) => x.gather(0, idx), py: "x.gather(0, idx)" },
  gather1: { js: ({ x, idx }) => x.gather(1, idx.slice(1, 0, 3)), py: "x.gather(1, idx[:, :3])" },
  scatterAdd: { js: ({ x, idx, src }) => x.scatterAdd(0, idx, src), py: "x.scatter_add(0, idx, src)" },
  indexAdd: { js: ({ x, rows, y }) => x.indexAdd(0, rows, y), py: "x.index_add(0, rows, y)" },
  indexAddAlpha: { js: ({ x, rows, y }) => x.indexAdd(0, rows, y, { alpha: -2 }), py: "x.index_add(0, rows, y, alpha=-2)" },
  oneHot: { js: ({ cls }) => oneHot(cls), py: "F.one_hot(cls)" },
  oneHot6: { js: ({ cls }) => oneHot(cls, 6), py: "F.one_hot(cls, 6)" },
  topk: { js: ({ x }) => x.topk(2), py: "x.topk(2)" },
  topkSmallest: { js: ({ x }) => x.topk(2, { dim: 0, largest: false }), py: "x.topk(2, dim=0, largest=False)" },
  sort: { js: ({ x }) => x.sort(), py: "x.sort()" },
  sortDim0Desc: { js: ({ x }) => x.sort({ dim: 0, descending: true }), py: "x.sort(dim=0, descending=True)" },
  sortNumber: { js: ({ x }) => x.sort(0), py: "x.sort(0)" },
  sortStable: { js: ({ ties }) => ties.sort({ stable: true }), py: "ties.sort(stable=True)" },
  cumsum: { js: ({ x }) => x.cumsum(1), py: "x.cumsum(1)" },
  cumsum0: { js: ({ x }) => x.cumsum(-2), py: "x.cumsum(-2)" },
  cumsumInt: { js: ({ ints }) => ints.cumsum(1), py: "ints.cumsum(1)" },
});

describe("indexing: gradients match finite differences", () => {
  const idx = () => tensor([0, 2, 1, 2, 1, 0, 0, 0], { shape: [2, 4], dtype: "int64" });
  const mask = () =>
    tensor(
      X.map((v) => v > 0),
      { shape: [3, 4] },
    );
  const y = () => tensor(pseudoRandom(12, 6), { shape: [3, 4], dtype: "float64" });
  const grads: [string, (x: Tensor) => Tensor][] = [
    ["where (input side)", (x) => where(mask(), x, y())],
    ["where (other side)", (x) => where(mask(), y(), x.mul(x))],
    ["maskedFill", (x) => x.maskedFill(mask(), 0.5).mul(x)],
    ["triu", (x) => x.triu(1)],
    ["tril", (x) => x.tril().mul(x)],
    ["gather", (x) => x.gather(0, idx())],
    ["scatterAdd (self and src)", (x) => x.scatterAdd(0, idx(), x.slice(0, 0, 2).mul(3))],
    ["indexAdd", (x) => x.indexAdd(0, tensor([2, 0, 2], { dtype: "int64" }), x.mul(x), { alpha: 0.5 })],
    ["topk values", (x) => x.topk(2).values],
    ["sort values", (x) => x.sort({ dim: 0 }).values],
    ["cumsum", (x) => x.cumsum(1)],
  ];
  for (const [name, f] of grads) {
    it(name, () => expectGradientMatchesFiniteDifferences(f, X, [3, 4]));
  }
});

describe("multinomial", () => {
  it("is reproducible under manualSeed and differs between seeds", () => {
    const p = tensor([0.1, 0.2, 0.3, 0.4]);
    manualSeed(7);
    const a = p.multinomial(50, true).toList();
    manualSeed(7);
    const b = p.multinomial(50, true).toList();
    manualSeed(8);
    const c = p.multinomial(50, true).toList();
    expect(a).toEqual(b);
    expect(a).not.toEqual(c);
  });
  it("draws each class about as often as its (unnormalized) weight says", () => {
    manualSeed(0);
    const n = 200_000;
    const draws = tensor([1, 2, 3, 4]).multinomial(n, true);
    expect(draws.dtype).toBe("int64");
    const counts = [0, 0, 0, 0];
    for (const v of draws.toList()) counts[v] += 1;
    // Binomial standard deviation for p=0.4 at n=2e5 is ~0.0011: 0.005 is over 4 sigma.
    counts.forEach((c, k) => expect(Math.abs(c / n - (k + 1) / 10)).toBeLessThan(0.005));
  });
  it("without replacement gives distinct indices and never a zero-weight class; rows sample independently", () => {
    manualSeed(1);
    const d = tensor([
      [0, 1, 1, 1, 1],
      [1, 1, 0, 0, 1],
    ]).multinomial(3);
    expect(d.shape).toEqual([2, 3]);
    const [r0, r1] = [d.toList().slice(0, 3), d.toList().slice(3)];
    expect(new Set(r0).size).toBe(3);
    expect(new Set(r1).size).toBe(3);
    expect(r0).not.toContain(0);
    expect(r1.sort()).toEqual([0, 1, 4]);
  });
});

describe("indexing: bad input names the op, the argument and the shapes", () => {
  const x = () => tensor(X, { shape: [3, 4] });
  const cases: ErrorCase[] = [
    ["where with a float condition", () => where(x(), x(), 0), /^where: condition: expected a bool Tensor .*got float32/, TypeError],
    [
      "where with shapes that do not broadcast",
      () => where(x().gt(0), x(), tensor([1, 2, 3])),
      /^where: cannot broadcast shapes \[3, 4\] and \[3\]: dim -1 \(from the end\) is 4 in condition and 3 in other/,
      RangeError,
    ],
    ["maskedFill with a float mask", () => x().maskedFill(x(), 0), /^maskedFill: mask: expected a bool Tensor .*got float32/, TypeError],
    [
      "maskedFill with a mask that does not broadcast",
      () => x().maskedFill(tensor([true, false]), 0),
      /^maskedFill: cannot broadcast shapes \[3, 4\] and \[2\]/,
      RangeError,
    ],
    ["triu of a vector", () => tensor([1, 2]).triu(), /^triu: expected a tensor with at least 2 dims .*got shape \[2\]/, RangeError],
    ["gather with float indices", () => x().gather(0, x()), /^gather: index: expected a Tensor of dtype int64 \(indices\), got float32/, TypeError],
    ["gather along a missing dim", () => x().gather(2, tensor([0], { dtype: "int64" })), /^gather: dim 2 is out of range for a tensor with 2 dims/, RangeError],
    [
      "gather with an index out of bounds",
      () => x().gather(0, tensor([[5]], { dtype: "int64" })),
      /^gather: .*5.* \(shapes: self \[3, 4\], index \[1, 1\]\)$/,
      Error,
    ],
    [
      "scatterAdd with int32 indices",
      () => x().scatterAdd(0, tensor([[0]], { dtype: "int32" as never }), x()),
      /^scatterAdd: index: expected a Tensor of dtype int64/,
      TypeError,
    ],
    [
      "indexAdd with a non-number alpha",
      () => x().indexAdd(0, tensor([0], { dtype: "int64" }), x().slice(0, 0, 1), { alpha: "2" as never }),
      /^indexAdd: alpha: expected a number, got the string "2"/,
      TypeError,
    ],
    ["oneHot of floats", () => oneHot(tensor([1, 2])), /^oneHot: indices: expected a Tensor of dtype int64 \(indices\), got float32/, TypeError],
    ["topk with k past the size", () => x().topk(5), /^topk: k \(5\) must be in \[0, 4\], the size of dim -1 of shape \[3, 4\]/, RangeError],
    ["sort along a missing dim", () => x().sort(3), /^sort: dim 3 is out of range for a tensor with 2 dims/, RangeError],
    ["cumsum along a missing dim", () => x().cumsum(-3), /^cumsum: dim -3 is out of range/, RangeError],
    ["multinomial with negative weights", () => tensor([0.5, -1]).multinomial(1), /^multinomial: .* \(shapes: self \[2\]\)$/, Error],
  ];
  itThrowsEach(cases);
});
