/**
 * Every operation of lib/tensor.ts and lib/functional.ts against PyTorch (same inputs, one
 * Python run) and, where the answer is short, against a hand computation.
 */
import { Tensor, cat, crossEntropy, manualSeed, mseLoss, tensor, zeros } from "../../lib";
import { itTorch, py } from "../helpers/python";
import { expectClose } from "../helpers/stats";

/** Deterministic pseudo-random values in (-2, 2), independent of libtorch's generator. */
function values(n: number, seed: number): number[] {
  let s = seed >>> 0;
  return Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s / 2 ** 32) * 4 - 2;
  });
}

const X = values(12, 1);
const Y = values(12, 2).map((v) => (Math.abs(v) < 0.1 ? 0.5 : v)); // keep divisors away from 0
const W = values(20, 3);
const x = () => tensor(X, { shape: [3, 4], dtype: "float64" });
const y = () => tensor(Y, { shape: [3, 4], dtype: "float64" });
const w = () => tensor(W, { shape: [4, 5], dtype: "float64" });

describe("hand-computed results", () => {
  const a = tensor([
    [1, 2],
    [3, 4],
  ]);
  const b = tensor([
    [5, 6],
    [7, 8],
  ]);
  it("arithmetic with tensors and numbers", () => {
    expect(a.add(b).toList()).toEqual([6, 8, 10, 12]);
    expect(a.sub(1).toList()).toEqual([0, 1, 2, 3]);
    expect(a.mul(b).toList()).toEqual([5, 12, 21, 32]);
    expect(b.div(2).toList()).toEqual([2.5, 3, 3.5, 4]);
    expect(a.pow(2).toList()).toEqual([1, 4, 9, 16]);
    expect(a.neg().toList()).toEqual([-1, -2, -3, -4]);
    expect(a.maximum(2.5).toList()).toEqual([2.5, 2.5, 3, 4]);
    expect(
      a
        .maximum(
          tensor([
            [0, 5],
            [3, 1],
          ]),
        )
        .toList(),
    ).toEqual([1, 5, 3, 4]);
  });
  it("matmul, transpose, reshape, view, narrow, indexSelect, cat", () => {
    expect(a.matmul(b).toList()).toEqual([19, 22, 43, 50]);
    expect(a.t().contiguous().toList()).toEqual([1, 3, 2, 4]);
    expect(a.transpose(0, 1).contiguous().toList()).toEqual([1, 3, 2, 4]);
    expect(a.reshape([4]).shape).toEqual([4]);
    expect(a.reshape([-1, 1]).shape).toEqual([4, 1]);
    expect(a.view([1, 4]).toList()).toEqual([1, 2, 3, 4]);
    expect(a.narrow(1, 1, 1).contiguous().toList()).toEqual([2, 4]);
    expect(a.indexSelect(0, tensor([1, 1, 0], { dtype: "int64" })).toList()).toEqual([3, 4, 3, 4, 1, 2]);
    expect(cat([a, b], 0).shape).toEqual([4, 2]);
    expect(cat([a, b], 1).toList()).toEqual([1, 2, 5, 6, 3, 4, 7, 8]);
  });
  it("reductions", () => {
    expect(a.sum().item()).toBe(10);
    expect(a.sum(0).toList()).toEqual([4, 6]);
    expect(a.sum([0, 1]).item()).toBe(10);
    expect(a.sum(1, true).shape).toEqual([2, 1]);
    expect(a.mean().item()).toBe(2.5);
    expect(a.mean(-1).toList()).toEqual([1.5, 3.5]);
    expect(a.max().item()).toBe(4);
    expect(
      tensor([
        [1, 9],
        [7, 3],
      ])
        .max(0)
        .toList(),
    ).toEqual([7, 9]);
    expect(
      tensor([
        [1, 9],
        [7, 3],
      ])
        .argmax()
        .item(),
    ).toBe(1);
    expect(
      tensor([
        [1, 9],
        [7, 3],
      ])
        .argmax(1)
        .toList(),
    ).toEqual([1, 0]);
    expect(
      tensor([
        [1, 9],
        [7, 3],
      ]).argmax(1).dtype,
    ).toBe("int64");
  });
  it("comparisons give bool tensors", () => {
    const c = a.gt(2);
    expect(c.dtype).toBe("bool");
    expect(c.toList()).toEqual([0, 0, 1, 1]);
    expect(a.lt(b.sub(4)).toList()).toEqual([0, 0, 0, 0]);
    expect(
      a
        .eq(
          tensor([
            [1, 0],
            [3, 0],
          ]),
        )
        .toList(),
    ).toEqual([1, 0, 1, 0]);
    expect(tensor([1, Infinity, NaN, -2]).isfinite().toList()).toEqual([1, 0, 0, 1]);
    expect(tensor([1, 2]).allFinite()).toBe(true);
    expect(tensor([1, -Infinity]).allFinite()).toBe(false);
  });
  it("allclose and equal", () => {
    expect(a.allclose(a.add(1e-7))).toBe(true);
    expect(a.allclose(a.add(1e-3))).toBe(false);
    expect(a.allclose(a.add(1e-3), { atol: 1e-2 })).toBe(true);
    expect(a.equal(a.clone())).toBe(true);
    expect(a.equal(a.add(1e-6))).toBe(false);
    expect(a.equal(a.to("float64"))).toBe(false); // dtype differs
    expect(a.equal(a.reshape([4]))).toBe(false); // shape differs
  });
  it("clone copies, detach shares storage, contiguous keeps values", () => {
    const src = tensor([1, 2, 3], { requiresGrad: true });
    expect(src.clone().requiresGrad).toBe(true);
    expect(src.detach().requiresGrad).toBe(false);
    expect(src.detach().equal(src.detach())).toBe(true);
    expect(
      tensor([
        [1, 2],
        [3, 4],
      ])
        .t()
        .contiguous()
        .toList(),
    ).toEqual([1, 3, 2, 4]);
  });
  it("dropout: p=0 and eval mode are the identity, p=1 zeroes, p=0.5 keeps about half scaled by 2", () => {
    const ones = zeros([100_000]).add(1);
    expect(ones.dropout(0).equal(ones)).toBe(true);
    expect(ones.dropout(0.5, false).equal(ones)).toBe(true);
    expect(ones.dropout(1).sum().item()).toBe(0);
    manualSeed(0);
    const d = ones.dropout(0.5).toList();
    expect(d.every((v) => v === 0 || v === 2)).toBe(true);
    const kept = d.filter((v) => v === 2).length / d.length;
    expect(Math.abs(kept - 0.5)).toBeLessThan(0.01);
  });
  it("softmax rows sum to 1 and equal exp(x)/Σexp(x)", () => {
    const s = tensor([[0, Math.log(3)]], { dtype: "float64" })
      .softmax(1)
      .toList();
    expectClose(s, [0.25, 0.75], 1e-15);
  });
});

describe("against PyTorch", () => {
  itTorch("elementwise, matrix, shape and reduction ops match torch 1.13 in float64", () => {
    const ours: Record<string, Tensor> = {
      add: x().add(y()),
      sub: x().sub(y()),
      mul: x().mul(y()),
      div: x().div(y()),
      add_s: x().add(0.5),
      div_s: x().div(3),
      pow: x().abs().pow(y()),
      pow_s: x().pow(3),
      maximum: x().maximum(y()),
      clamp: x().maximum(0.25),
      neg: x().neg(),
      exp: x().exp(),
      log: x().abs().log(),
      sqrt: x().abs().sqrt(),
      abs: x().abs(),
      relu: x().relu(),
      gelu: x().gelu(),
      tanh: x().tanh(),
      sigmoid: x().sigmoid(),
      softmax0: x().softmax(0),
      softmax1: x().softmax(-1),
      lsm: x().logSoftmax(1),
      matmul: x().matmul(w()),
      bmm: x().reshape([3, 1, 4]).matmul(w()),
      t: x().t().contiguous(),
      tr: x().reshape([3, 2, 2]).transpose(0, 2).contiguous(),
      sum: x().sum(),
      sum1: x().sum(1),
      mean0: x().mean(0, true),
      mean01: x().mean([0, 1]),
      max: x().max(),
      max1: x().max(1),
      argmax1: x().argmax(1),
      argmax: x().argmax(),
      eq: x().eq(x().maximum(0)),
      gt: x().gt(y()),
      lt: x().lt(0),
      isel: x().indexSelect(1, tensor([3, 0], { dtype: "int64" })),
      narrow: x().narrow(0, 1, 2).contiguous(),
    };
    const ref = py<Record<string, number[]>>(
      `
x = torch.tensor(inp["X"]).reshape(3, 4); y = torch.tensor(inp["Y"]).reshape(3, 4); w = torch.tensor(inp["W"]).reshape(4, 5)
F = torch.nn.functional
r = dict(add=x+y, sub=x-y, mul=x*y, div=x/y, add_s=x+0.5, div_s=x/3,
  pow=x.abs()**y, pow_s=x**3, maximum=torch.maximum(x, y), clamp=x.clamp_min(0.25),
  neg=-x, exp=x.exp(), log=x.abs().log(), sqrt=x.abs().sqrt(), abs=x.abs(),
  relu=x.relu(), gelu=F.gelu(x), tanh=x.tanh(), sigmoid=x.sigmoid(),
  softmax0=x.softmax(0), softmax1=x.softmax(-1), lsm=x.log_softmax(1),
  matmul=x@w, bmm=x.reshape(3, 1, 4)@w, t=x.t(), tr=x.reshape(3, 2, 2).transpose(0, 2),
  sum=x.sum(), sum1=x.sum(1), mean0=x.mean(0, keepdim=True), mean01=x.mean((0, 1)),
  max=x.max(), max1=x.max(1).values, argmax1=x.argmax(1), argmax=x.argmax(),
  eq=x == x.clamp_min(0), gt=x > y, lt=x < 0,
  isel=x.index_select(1, torch.tensor([3, 0])), narrow=x.narrow(0, 1, 2))
out = {k: L(v) for k, v in r.items()}
out["shapes"] = {k: list(v.shape) for k, v in r.items()}
`,
      { X, Y, W },
    );
    const shapes = ref.shapes as unknown as Record<string, number[]>;
    for (const [name, t] of Object.entries(ours)) {
      try {
        expect(t.shape).toEqual(shapes[name]);
        expectClose(t.toList(), ref[name], 1e-12, 1e-12);
      } catch (e) {
        throw new Error(`${name}: ${(e as Error).message}`);
      }
    }
  });

  itTorch("crossEntropy (reductions, ignoreIndex, label smoothing) and mseLoss match torch", () => {
    const logits = x();
    const target = tensor([2, -100, 0], { dtype: "int64" });
    const ours = {
      ceMean: crossEntropy(logits, target),
      ceSum: crossEntropy(logits, target, { reduction: "sum" }),
      ceNone: crossEntropy(logits, tensor([2, 1, 0], { dtype: "int64" }), { reduction: "none" }),
      ceSmooth: crossEntropy(logits, target, { labelSmoothing: 0.1 }),
      ceIgnore: crossEntropy(logits, tensor([2, 1, 0], { dtype: "int64" }), { ignoreIndex: 1 }),
      mse: mseLoss(x(), y()),
      mseSum: mseLoss(x(), y(), { reduction: "sum" }),
      mseNone: mseLoss(x(), y(), { reduction: "none" }),
    };
    const ref = py<Record<string, number[]>>(
      `
x = torch.tensor(inp["X"]).reshape(3, 4); y = torch.tensor(inp["Y"]).reshape(3, 4)
F = torch.nn.functional
t = torch.tensor([2, -100, 0]); t2 = torch.tensor([2, 1, 0])
r = dict(ceMean=F.cross_entropy(x, t), ceSum=F.cross_entropy(x, t, reduction="sum"),
  ceNone=F.cross_entropy(x, t2, reduction="none"), ceSmooth=F.cross_entropy(x, t, label_smoothing=0.1),
  ceIgnore=F.cross_entropy(x, t2, ignore_index=1),
  mse=F.mse_loss(x, y), mseSum=F.mse_loss(x, y, reduction="sum"), mseNone=F.mse_loss(x, y, reduction="none"))
out = {k: L(v) for k, v in r.items()}
`,
      { X, Y },
    );
    for (const [name, t] of Object.entries(ours)) expectClose(t.toList(), ref[name], 1e-12, 1e-12);
  });

  it("crossEntropy by hand: -log softmax(x)[target] averaged over kept rows", () => {
    const rows = [
      [0, 0],
      [Math.log(3), 0],
    ];
    const loss = crossEntropy(tensor(rows, { dtype: "float64" }), tensor([0, 1], { dtype: "int64" })).item();
    // row 0: softmax (1/2, 1/2) -> -log(1/2); row 1: softmax (3/4, 1/4) -> -log(1/4)
    expect(loss).toBeCloseTo((Math.log(2) + Math.log(4)) / 2, 14);
  });
});
