/**
 * Shape ops (permute, unsqueeze, squeeze, flatten, expand, stack, split, chunk, slice): values
 * against PyTorch, gradients against finite differences, views sharing storage as in PyTorch.
 */
import { Tensor, noGrad, stack, tensor } from "../../lib";
import { expectGradientMatchesFiniteDifferences, pseudoRandom } from "../helpers/gradcheck";
import { CaseInput, describeAgainstTorch } from "../helpers/torch-cases";
import { ErrorCase, itThrowsEach } from "../helpers/errors";

const X = pseudoRandom(24, 1);
const inputs: Record<string, CaseInput> = {
  x: { values: X, shape: [2, 3, 4], dtype: "float64" },
  s: { values: pseudoRandom(6, 2), shape: [2, 1, 3, 1], dtype: "float64" },
  c: { values: pseudoRandom(3, 3), shape: [3, 1], dtype: "float64" },
  y: { values: pseudoRandom(24, 4), shape: [2, 3, 4], dtype: "float64" },
};

describeAgainstTorch("shape ops against PyTorch", inputs, {
  permute: { js: ({ x }) => x.permute(2, 0, 1), py: "x.permute(2, 0, 1)" },
  permuteList: { js: ({ x }) => x.permute([1, -1, 0]), py: "x.permute([1, -1, 0])" },
  unsqueeze: { js: ({ x }) => x.unsqueeze(1), py: "x.unsqueeze(1)" },
  unsqueezeEnd: { js: ({ x }) => x.unsqueeze(-1), py: "x.unsqueeze(-1)" },
  unsqueezeAppend: { js: ({ x }) => x.unsqueeze(3), py: "x.unsqueeze(3)" },
  squeeze: { js: ({ s }) => s.squeeze(), py: "s.squeeze()" },
  squeezeDim: { js: ({ s }) => s.squeeze(1), py: "s.squeeze(1)" },
  squeezeNotOne: { js: ({ s }) => s.squeeze(0), py: "s.squeeze(0)" },
  flatten: { js: ({ x }) => x.flatten(), py: "x.flatten()" },
  flatten1: { js: ({ x }) => x.flatten(1), py: "x.flatten(1)" },
  flatten01: { js: ({ x }) => x.flatten(0, 1), py: "x.flatten(0, 1)" },
  expand: { js: ({ c }) => c.expand(2, 3, 4), py: "c.expand(2, 3, 4)" },
  expandKeep: { js: ({ c }) => c.expand([-1, 5]), py: "c.expand(-1, 5)" },
  stack0: { js: ({ x, y }) => stack([x, y]), py: "torch.stack([x, y])" },
  stackLast: { js: ({ x, y }) => stack([x, y], -1), py: "torch.stack([x, y], -1)" },
  split: { js: ({ x }) => x.split(3, 2), py: "x.split(3, 2)" },
  splitSizes: { js: ({ x }) => x.split([1, 3], -1), py: "x.split([1, 3], -1)" },
  chunk: { js: ({ x }) => x.chunk(3, 2), py: "x.chunk(3, 2)" },
  chunk0: { js: ({ x }) => x.chunk(2), py: "x.chunk(2)" },
  slice: { js: ({ x }) => x.slice(2, 1, null, 2), py: "x[:, :, 1::2]" },
  sliceNegative: { js: ({ x }) => x.slice(-1, -3, -1), py: "x[..., -3:-1]" },
  sliceClamped: { js: ({ x }) => x.slice(1, 1, 100), py: "x[:, 1:100]" },
  sliceEmpty: { js: ({ x }) => x.slice(0, 5, 10), py: "x[5:10]" },
  sliceDefaults: { js: ({ x }) => x.slice(1), py: "x[:, :]" },
});

describe("shape ops: views and gradients", () => {
  const shape = [2, 3, 4];
  it("permute, unsqueeze, squeeze, flatten, expand, slice are views of the same storage", () => {
    const x = tensor(X, { shape, dtype: "float64" });
    const views: [string, Tensor][] = [
      ["permute", x.permute(2, 0, 1)],
      ["unsqueeze", x.unsqueeze(0)],
      ["squeeze", x.unsqueeze(0).squeeze()],
      ["flatten", x.flatten()],
      ["expand", x.slice(0, 0, 1).expand(5, 3, 4)],
      ["slice", x.slice(2, 1, null, 2)],
      ["split", x.split(2, 2)[1]],
      ["chunk", x.chunk(2, 1)[0]],
    ];
    noGrad(() => x.zero_());
    for (const [name, v] of views) expect([name, v.abs().sum().item()]).toEqual([name, 0]);
  });
  it("expand does not copy: a 1-element tensor expanded to a million elements shares its one value", () => {
    const one = tensor([3], { dtype: "float64" });
    const big = one.expand(1000, 1000);
    expect(big.shape).toEqual([1000, 1000]);
    expect(big.sum().item()).toBe(3e6);
  });
  const grads: [string, (x: Tensor) => Tensor][] = [
    ["permute", (x) => x.permute(2, 0, 1)],
    ["unsqueeze/squeeze", (x) => x.unsqueeze(1).squeeze(1).mul(x)],
    ["flatten", (x) => x.flatten(1).mul(x.flatten(1))],
    ["expand", (x) => x.slice(0, 0, 1).expand(4, 3, 4)],
    ["stack", (x) => stack([x, x.mul(x)], 1)],
    ["split", (x) => x.split([1, 3], 2)[1].mul(2)],
    ["chunk", (x) => x.chunk(3, 1)[2]],
    ["slice", (x) => x.slice(2, 1, null, 2).mul(x.slice(2, 0, 3, 2))],
  ];
  for (const [name, f] of grads) {
    it(`${name}: gradient matches finite differences`, () => expectGradientMatchesFiniteDifferences(f, X, shape));
  }
});

describe("shape ops: bad input names the op, the argument and the shapes", () => {
  const x = () => tensor(X, { shape: [2, 3, 4] });
  const cases: ErrorCase[] = [
    ["permute with too few dims", () => x().permute(1, 0), /^permute: dims \[1, 0\] name 2 dims, but the tensor of shape \[2, 3, 4\] has 3/, RangeError],
    ["permute repeating a dim", () => x().permute(0, 0, 1), /^permute: dims \[0, 0, 1\] repeat a dim/, RangeError],
    ["unsqueeze past the end", () => x().unsqueeze(5), /^unsqueeze: dim 5 is out of range for a tensor with 4 dims/, RangeError],
    ["squeeze a dim out of range", () => x().squeeze(3), /^squeeze: dim 3 is out of range for a tensor with 3 dims/, RangeError],
    ["flatten with a bad end", () => x().flatten(0, 7), /^flatten: dim 7 is out of range for a tensor with 3 dims/, RangeError],
    [
      "expand a size-3 dim to 5",
      () => x().expand(2, 5, 4),
      /^expand: cannot expand \[2, 3, 4\] to \[2, 5, 4\]: dim -2 \(from the end\) has size 3/,
      RangeError,
    ],
    [
      "expand to fewer dims",
      () => x().expand(3, 4),
      /^expand: cannot expand \[2, 3, 4\] to \[3, 4\]: the new shape needs at least the tensor's 3 dims/,
      RangeError,
    ],
    [
      "stack of different shapes",
      () => stack([x(), x().slice(0, 0, 1)]),
      /^stack: tensors\[1\] has shape \[1, 3, 4\] but tensors\[0\] has \[2, 3, 4\]: stack needs tensors of equal shapes/,
      RangeError,
    ],
    ["stack of nothing", () => stack([]), /^stack: tensors: expected at least one Tensor, got an empty array/, RangeError],
    [
      "split sizes that do not add up",
      () => x().split([1, 2], 2),
      /^split: the sizes \[1, 2\] add up to 3, but dim 2 of shape \[2, 3, 4\] has size 4/,
      RangeError,
    ],
    ["split size 0", () => x().split(0), /^split: splitSizeOrSections: expected a positive integer, got 0 \(shapes: self \[2, 3, 4\]\)/, RangeError],
    ["chunk count 0", () => x().chunk(0), /^chunk: chunks: expected a positive integer, got 0/, RangeError],
    ["slice step 0", () => x().slice(0, 0, 2, 0), /^slice: step: expected a positive integer, got 0 \(shapes: self \[2, 3, 4\]\)/, RangeError],
    ["slice dim out of range", () => x().slice(3, 0, 1), /^slice: dim 3 is out of range for a tensor with 3 dims/, RangeError],
    ["slice with a fractional start", () => x().slice(0, 0.5), /^slice: start: expected an integer, got 0.5/, TypeError],
  ];
  itThrowsEach(cases);
});
