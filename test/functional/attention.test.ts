/**
 * scaledDotProductAttention against PyTorch 2's semantics written out in PyTorch 1.13 math
 * (repeat_interleave for grouped-query heads, masked_fill / add, softmax, zeros for rows with no
 * key), values and gradients, and against central finite differences in float64.
 */
import { Tensor, noGrad, scaledDotProductAttention, tensor } from "../../lib";
import { itTorch, py } from "../helpers/python";
import { expectClose } from "../helpers/stats";
import { f64, numericGrad, values } from "./values";

const REFERENCE = `
def sdpa(q, k, v, mask=None, causal=False, scale=None):
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    rep = q.shape[-3] // k.shape[-3]
    k = k.repeat_interleave(rep, dim=-3)
    v = v.repeat_interleave(rep, dim=-3)
    s = q @ k.transpose(-2, -1) * scale
    T, S = s.shape[-2], s.shape[-1]
    if causal:
        s = s.masked_fill(~torch.ones(T, S, dtype=torch.bool).tril(), float("-inf"))
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else s + mask
    p = torch.softmax(s, -1)
    p = torch.where(torch.isneginf(s).all(-1, keepdim=True), torch.zeros_like(p), p)
    return p @ v
def T(name, shape, grad=False):
    return torch.tensor(inp[name], dtype=torch.float64).reshape(shape).requires_grad_(grad)
`;

interface Case {
  name: string;
  q: number[];
  k: number[];
  v: number[];
  causal?: boolean;
  mask?: { shape: number[]; kind: "bool" | "float"; grad?: boolean };
  scale?: number;
}

function maskTensor(c: Case, requiresGrad = false): Tensor | null {
  if (!c.mask) return null;
  const n = c.mask.shape.reduce((a, b) => a * b, 1);
  if (c.mask.kind === "bool") {
    // Mostly true, with whole rows false at the first query position of each batch.
    const bits = values(n, 91).map((x, i) => x > -0.5 && i % c.mask!.shape.at(-1)! !== 1);
    return tensor(bits.map(Number), { shape: c.mask.shape, dtype: "bool" });
  }
  return tensor(values(n, 92), { shape: c.mask.shape, dtype: "float64", requiresGrad });
}

const cases: Case[] = [
  { name: "plain (B=2, H=3, T=4, S=5, E=6, Ev=3)", q: [2, 3, 4, 6], k: [2, 3, 5, 6], v: [2, 3, 5, 3] },
  { name: "causal, explicit scale", q: [2, 2, 5, 4], k: [2, 2, 5, 4], v: [2, 2, 5, 4], causal: true, scale: 0.7 },
  { name: "grouped-query: 6 query heads on 2 kv heads, causal", q: [1, 6, 4, 4], k: [1, 2, 4, 4], v: [1, 2, 4, 4], causal: true },
  { name: "boolean mask (1, 1, T, S)", q: [2, 2, 3, 4], k: [2, 2, 5, 4], v: [2, 2, 5, 4], mask: { shape: [1, 1, 3, 5], kind: "bool" } },
  {
    name: "additive float mask with a gradient, grouped heads",
    q: [2, 4, 3, 4],
    k: [2, 2, 3, 4],
    v: [2, 2, 3, 4],
    mask: { shape: [2, 1, 3, 3], kind: "float", grad: true },
  },
  {
    name: "causal in row blocks (T >= 64): grouped heads, T = 70 not a multiple of the block, S = 75 > T",
    q: [1, 4, 70, 8],
    k: [1, 2, 75, 8],
    v: [1, 2, 75, 5],
    causal: true,
  },
  { name: "causal in row blocks, S = 40 < T = 80", q: [1, 2, 80, 4], k: [1, 2, 40, 4], v: [1, 2, 40, 4], causal: true },
  { name: "causal in row blocks, T = S = 128, one head group", q: [2, 1, 128, 4], k: [2, 1, 128, 4], v: [2, 1, 128, 4], causal: true, scale: 0.3 },
  { name: "rank 3 (H, T, E) with causal and a mask", q: [2, 4, 3], k: [2, 4, 3], v: [2, 4, 3], causal: true, mask: { shape: [4, 4], kind: "float" } },
];

describe("scaledDotProductAttention: values and gradients equal PyTorch's math", () => {
  for (const c of cases) {
    itTorch(c.name, () => {
      const q = f64(c.q, 1, true),
        k = f64(c.k, 2, true),
        v = f64(c.v, 3, true);
      const mask = maskTensor(c, c.mask?.grad);
      const out = scaledDotProductAttention(q, k, v, { causal: c.causal, mask, scale: c.scale });
      const g = f64(out.shape, 4);
      out.backward(g);
      const ref = py<Record<string, number[]>>(
        REFERENCE +
          `
q, k, v = T("q", inp["qs"], True), T("k", inp["ks"], True), T("v", inp["vs"], True)
mask = None
if inp["mask"] is not None:
    mask = torch.tensor(inp["mask"]).reshape(inp["ms"])
    mask = mask.bool() if inp["kind"] == "bool" else mask.double().requires_grad_(inp["mgrad"])
o = sdpa(q, k, v, mask, inp["causal"], inp["scale"])
o.backward(T("g", o.shape))
out = {"o": L(o), "q": L(q.grad), "k": L(k.grad), "v": L(v.grad), "m": L(mask.grad) if inp["mgrad"] else None}
`,
        {
          q: q.toList(),
          k: k.toList(),
          v: v.toList(),
          g: g.toList(),
          qs: c.q,
          ks: c.k,
          vs: c.v,
          mask: mask ? mask.toList() : null,
          ms: c.mask?.shape ?? null,
          kind: c.mask?.kind ?? null,
          mgrad: c.mask?.grad ?? false,
          causal: c.causal ?? false,
          scale: c.scale ?? null,
        },
      );
      expect(out.shape).toEqual([...c.q.slice(0, -1), c.v.at(-1)]);
      expectClose(out.toList(), ref.o, 1e-12);
      expectClose(q.grad!.toList(), ref.q, 1e-12);
      expectClose(k.grad!.toList(), ref.k, 1e-12);
      expectClose(v.grad!.toList(), ref.v, 1e-12);
      if (c.mask?.grad) expectClose(mask!.grad!.toList(), ref.m, 1e-12);
    });
  }
});

describe("scaledDotProductAttention: gradients equal central finite differences (float64)", () => {
  const shapes = { q: [1, 4, 3, 2], k: [1, 2, 4, 2], v: [1, 2, 4, 3] };
  const Q = values(24, 5),
    K = values(16, 6),
    V = values(24, 7),
    G = values(36, 8);
  const mask = () =>
    tensor(
      values(12, 9).map((x) => (x > -0.6 ? 1 : 0)),
      { shape: [1, 1, 3, 4], dtype: "bool" },
    );
  const loss = (q: number[], k: number[], v: number[]) =>
    noGrad(() =>
      scaledDotProductAttention(
        tensor(q, { shape: shapes.q, dtype: "float64" }),
        tensor(k, { shape: shapes.k, dtype: "float64" }),
        tensor(v, { shape: shapes.v, dtype: "float64" }),
        { causal: true, mask: mask() },
      )
        .mul(tensor(G, { shape: [1, 4, 3, 3], dtype: "float64" }))
        .sum()
        .item(),
    );
  it("grouped-query, causal, boolean mask: dq, dk, dv", () => {
    const q = tensor(Q, { shape: shapes.q, dtype: "float64", requiresGrad: true });
    const k = tensor(K, { shape: shapes.k, dtype: "float64", requiresGrad: true });
    const v = tensor(V, { shape: shapes.v, dtype: "float64", requiresGrad: true });
    scaledDotProductAttention(q, k, v, { causal: true, mask: mask() }).backward(tensor(G, { shape: [1, 4, 3, 3], dtype: "float64" }));
    expectClose(
      q.grad!.toList(),
      numericGrad((x) => loss(x, K, V), Q),
      1e-8,
    );
    expectClose(
      k.grad!.toList(),
      numericGrad((x) => loss(Q, x, V), K),
      1e-8,
    );
    expectClose(
      v.grad!.toList(),
      numericGrad((x) => loss(Q, K, x), V),
      1e-8,
    );
  });
});

describe("scaledDotProductAttention: masking edge cases", () => {
  it("causal attention in row blocks equals the dense path given the same pattern as a boolean mask", () => {
    const shape = [2, 4, 96, 8];
    const run = (opts: { causal?: boolean; mask?: Tensor }) => {
      const q = f64(shape, 41, true),
        k = f64([2, 2, 96, 8], 42, true),
        v = f64([2, 2, 96, 8], 43, true);
      const out = scaledDotProductAttention(q, k, v, opts);
      out.backward(f64(shape, 44));
      return [out, q.grad!, k.grad!, v.grad!].map((t) => t.toList());
    };
    const lower = tensor(
      Array.from({ length: 96 * 96 }, (_, i) => (i % 96 <= Math.floor(i / 96) ? 1 : 0)),
      { shape: [96, 96], dtype: "bool" },
    );
    const [blocked, dense] = [run({ causal: true }), run({ mask: lower })];
    blocked.forEach((b, i) => expectClose(b, dense[i], 1e-13));
  });

  it("causal masking gives no NaN in values or gradients, even with large scores", () => {
    const q = f64([1, 1, 6, 4], 11, true).mul(1e3);
    const k = f64([1, 1, 6, 4], 12, true);
    const v = f64([1, 1, 6, 4], 13, true);
    const out = scaledDotProductAttention(q, k, v, { causal: true });
    out.sum().backward();
    expect(out.allFinite()).toBe(true);
    expect(k.grad!.allFinite()).toBe(true);
    // The first query may only see the first key: its output is exactly v[0].
    expectClose(out.narrow(2, 0, 1).toList(), v.narrow(2, 0, 1).toList(), 0);
  });

  it("a fully masked row gives zeros and zero gradients (PyTorch >= 2.5), and the other rows are untouched", () => {
    const q = f64([1, 1, 3, 2], 21, true),
      k = f64([1, 1, 3, 2], 22, true),
      v = f64([1, 1, 3, 2], 23, true);
    const mask = tensor([0, 0, 0, 1, 1, 0, 1, 1, 1], { shape: [3, 3], dtype: "bool" });
    const additive = tensor([-Infinity, -Infinity, -Infinity, 0, 0, -Infinity, 0, 0, 0], { shape: [3, 3], dtype: "float64" });
    const out = scaledDotProductAttention(q, k, v, { mask });
    expect(out.narrow(2, 0, 1).toList()).toEqual([0, 0]);
    expect(out.allFinite()).toBe(true);
    expectClose(scaledDotProductAttention(q, k, v, { mask: additive }).toList(), out.toList(), 1e-15);
    out.sum().backward();
    expect(q.grad!.narrow(2, 0, 1).toList()).toEqual([0, 0]);
    expect(q.grad!.allFinite() && k.grad!.allFinite() && v.grad!.allFinite()).toBe(true);
  });

  it("dropout zeroes attention weights or scales them by 1 / (1 - p)", () => {
    // With v the identity, the output rows are the (dropped) attention weights themselves.
    const q = f64([1, 1, 64, 8], 31),
      k = f64([1, 1, 64, 8], 32);
    const eye = tensor(
      Array.from({ length: 64 * 64 }, (_, i) => (i % 65 === 0 ? 1 : 0)),
      { shape: [1, 1, 64, 64], dtype: "float64" },
    );
    const p = 0.25;
    const probs = scaledDotProductAttention(q, k, eye).toList();
    const dropped = scaledDotProductAttention(q, k, eye, { dropoutP: p }).toList();
    let zeros = 0;
    dropped.forEach((d, i) => {
      if (d === 0) zeros++;
      else expect(Math.abs(d - probs[i] / (1 - p))).toBeLessThan(1e-12);
    });
    expect(zeros / dropped.length).toBeGreaterThan(0.2);
    expect(zeros / dropped.length).toBeLessThan(0.3);
  });
});

describe("scaledDotProductAttention: half precision", () => {
  it.each(["float16", "bfloat16"] as const)("%s gives its own dtype, close to the float32 result (dense and blocked causal paths)", (dtype) => {
    for (const T of [8, 64]) {
      const [q, k, v] = [1, 2, 3].map((seed) => f64([2, 4, T, 16], seed).to(dtype));
      const out = scaledDotProductAttention(q, k, v, { causal: true });
      expect(out.dtype).toBe(dtype);
      const wide = scaledDotProductAttention(q.to("float32"), k.to("float32"), v.to("float32"), { causal: true });
      expectClose(out.to("float32").toList(), wide.toList(), dtype === "float16" ? 4e-3 : 3e-2);
    }
  });
});

describe("scaledDotProductAttention: bad input names the op, the argument and the shapes", () => {
  const q = f64([2, 4, 3, 8], 1),
    k = f64([2, 2, 5, 8], 2),
    v = f64([2, 2, 5, 8], 3);
  it.each([
    [
      "heads that do not divide",
      () => scaledDotProductAttention(q, f64([2, 3, 5, 8], 2), f64([2, 3, 5, 8], 3)),
      /scaledDotProductAttention: .*heads.*query \[2, 4, 3, 8\], key \[2, 3, 5, 8\]/,
    ],
    ["E mismatch", () => scaledDotProductAttention(q, f64([2, 2, 5, 7], 2), v), /scaledDotProductAttention: key: expected last dim 8.*key \[2, 2, 5, 7\]/],
    ["S mismatch", () => scaledDotProductAttention(q, k, f64([2, 2, 4, 8], 3)), /scaledDotProductAttention: value: expected 5 positions/],
    ["rank", () => scaledDotProductAttention(f64([3, 8], 1), k, v), /scaledDotProductAttention: expected query .*rank >= 3, got query \[3, 8\]/],
    ["batch", () => scaledDotProductAttention(q, f64([1, 2, 5, 8], 2), f64([1, 2, 5, 8], 3)), /batch dims/],
    [
      "mask shape",
      () => scaledDotProductAttention(q, k, v, { mask: tensor([1, 0], { dtype: "bool" }) }),
      /scaledDotProductAttention: mask: shape \[2\] does not broadcast to .*\[2, 4, 3, 5\]/,
    ],
    ["mask dtype", () => scaledDotProductAttention(q, k, v, { mask: tensor([1], { dtype: "int64" }) }), /mask: expected a boolean .* got dtype int64/],
    ["dtype", () => scaledDotProductAttention(q, k.to("float32"), v), /scaledDotProductAttention: key has dtype float32 but query has float64/],
    ["dropoutP", () => scaledDotProductAttention(q, k, v, { dropoutP: 1 }), /dropoutP: expected a probability in \[0, 1\), got 1/],
    ["not a tensor", () => scaledDotProductAttention(q, [1] as unknown as Tensor, v), /scaledDotProductAttention: key: expected a Tensor, got an array/],
  ])("%s", (_name, call, message) => {
    expect(call).toThrow(message);
  });
});
