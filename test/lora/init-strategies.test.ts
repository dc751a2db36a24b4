/**
 * Weight-aware inits (PiSSA, randomized PiSSA, OLoRA, orthogonal) against PEFT's formulas, computed
 * independently in PyTorch over /usr/bin/python3, and their invariants: at step 0 the adapted output
 * equals the original base output; residual + s·B·A = W; exact unmerge; refusals by name.
 */
import { ConfigError, Tensor, lora, manualSeed, nn, randn, tensor } from "../../lib";
import { itTorch, py } from "../helpers/python";
import { maxAbsDiff, valuesOf } from "../helpers/stats";

const fromList = (values: number[], shape: number[]): Tensor => tensor(values, { shape, dtype: "float32" });

/** Two Linear layers (one square, one wide) and a Conv1D, as in a transformer block. */
class Block extends nn.Module {
  q = new nn.Linear(12, 12);
  up = new nn.Linear(12, 20);
  proj = new nn.Conv1D(12, 20);
  override forward(x: Tensor): Tensor {
    return this.proj.forward(this.up.forward(this.q.forward(x)).relu());
  }
}

function block(seed = 3): { model: Block; x: Tensor; W: Record<string, Tensor> } {
  manualSeed(seed);
  const model = new Block();
  // Give the Conv1D weight a spread like the Linear ones (its default std 0.02 makes the spectrum flat).
  model.proj.weight = randn([20, 12]).mul(0.3);
  const x = randn([5, 12]);
  const W = { q: model.q.weight.clone(), up: model.up.weight.clone(), proj: model.proj.weight.clone() };
  return { model, x, W };
}

/** A module holding the given children under their names (forward is not used). */
class Holder extends nn.Module {
  [child: string]: unknown;
  constructor(children: Record<string, nn.Module>) {
    super();
    Object.assign(this, children);
  }
  override forward(x: Tensor): Tensor {
    return (this.fc as nn.Module).forward(x) as Tensor;
  }
}

const layerOf = (lm: lora.LoraModel, path: string): lora.LoraLinear => lm.loraLayers().find(([p]) => p === path)![1] as lora.LoraLinear;

/** The adapter's s·B·A in the (out, in) layout and the residual base weight in the same layout. */
function parts(lm: lora.LoraModel, path: string): { delta: Tensor; residual: Tensor } {
  const layer = layerOf(lm, path);
  const [A, B] = layer.factors("default");
  const s = layer.settings("default")!.scale;
  const w = layer.base_layer.weight.detach();
  return { delta: B.detach().matmul(A.detach()).mul(s), residual: layer.base_layer instanceof nn.Conv1D ? w.t() : w };
}

describe("weight-aware inits", () => {
  for (const init of ["pissa", "pissa_niter_4", "olora", "orthogonal"] as const) {
    test(`${init}: the adapted output at step 0 equals the original output, and residual + s·B·A = W`, () => {
      const { model, x, W } = block();
      const before = model.forward(x);
      const lm = lora.injectAdapter(model, { r: 4, loraAlpha: 8, targetModules: ["q", "up", "proj"], initLoraWeights: init });
      const after = lm.forward(x);
      expect(maxAbsDiff(after, before)).toBeLessThan(1e-5);
      for (const path of ["q", "up", "proj"] as const) {
        const { delta, residual } = parts(lm, path);
        const original = path === "proj" ? W[path].t() : W[path];
        expect(maxAbsDiff(residual.add(delta), original)).toBeLessThan(1e-5);
        if (init === "orthogonal") {
          // The base is untouched; B·A vanishes although neither factor does.
          expect(layerOf(lm, path).base_layer.weight.equal(W[path])).toBe(true);
          const [A, B] = layerOf(lm, path).factors("default");
          expect(A.abs().max().item()).toBeGreaterThan(1e-3);
          expect(B.abs().max().item()).toBeGreaterThan(1e-3);
        } else {
          // The adapter really holds the principal (or QR) part: the base weight changed.
          expect(delta.abs().max().item()).toBeGreaterThan(1e-2);
        }
      }
    });
  }

  itTorch("pissa: s·B·A and the residual equal PEFT's formula (torch.linalg.svd in fp32), factors up to the SVD's signs", () => {
    const { model, W } = block();
    const lm = lora.injectAdapter(model, { r: 3, loraAlpha: 6, targetModules: ["up", "proj"], initLoraWeights: "pissa" });
    for (const path of ["up", "proj"] as const) {
      const original = path === "proj" ? W[path].t().contiguous() : W[path];
      const ref = py<{ A: number[]; B: number[]; res: number[] }>(
        `
W = torch.tensor(inp["W"], dtype=torch.float32).reshape(inp["shape"])
s = inp["s"]; r = inp["r"]
V, S, Uh = torch.linalg.svd(W, full_matrices=False)
Sr = S[:r] / s
A = torch.diag(torch.sqrt(Sr)) @ Uh[:r]
B = V[:, :r] @ torch.diag(torch.sqrt(Sr))
out = {"A": L(A), "B": L(B), "res": L(W - s * B @ A)}
`,
        { W: valuesOf(original), shape: original.shape, s: 2, r: 3 },
      );
      const layer = layerOf(lm, path);
      const [A, B] = layer.factors("default");
      const Aref = fromList(ref.A, A.shape);
      const Bref = fromList(ref.B, B.shape);
      expect(maxAbsDiff(B.matmul(A), Bref.matmul(Aref))).toBeLessThan(1e-5);
      expect(maxAbsDiff(parts(lm, path).residual, fromList(ref.res, original.shape))).toBeLessThan(1e-5);
      // Each singular pair may flip sign together: align row i of A with the reference's.
      for (let i = 0; i < 3; i++) {
        const a = A.narrow(0, i, 1),
          ar = Aref.narrow(0, i, 1);
        const sign = a.mul(ar).sum().item() >= 0 ? 1 : -1;
        expect(maxAbsDiff(a.mul(sign), ar)).toBeLessThan(1e-4);
        expect(maxAbsDiff(B.narrow(1, i, 1).mul(sign), Bref.narrow(1, i, 1))).toBeLessThan(1e-4);
      }
    }
  });

  itTorch("pissa_niter_N: equals torch.svd_lowrank(W, r, niter=N) from the same seed, as PEFT calls it", () => {
    for (const [path, niter] of [
      ["up", 2],
      ["q", 0],
    ] as const) {
      const { model, W } = block();
      manualSeed(77);
      const lm = lora.injectAdapter(model, { r: 4, loraAlpha: 4, targetModules: [path], initLoraWeights: `pissa_niter_${niter}` });
      const ref = py<{ A: number[]; B: number[]; res: number[] }>(
        `
W = torch.tensor(inp["W"], dtype=torch.float32).reshape(inp["shape"])
r = inp["r"]; s = inp["s"]
torch.manual_seed(77)
# the factor lora_A is allocated and kaiming-initialized before the decomposition runs
torch.nn.init.kaiming_uniform_(torch.empty(r, W.shape[1], dtype=torch.float32), a=math.sqrt(5))
V, S, U = torch.svd_lowrank(W, r, niter=inp["niter"])
Sr = S / s
A = torch.diag(torch.sqrt(Sr)) @ U.t()
B = V @ torch.diag(torch.sqrt(Sr))
out = {"A": L(A), "B": L(B), "res": L(W - s * B @ A)}
`,
        { W: valuesOf(W[path]), shape: W[path].shape, r: 4, s: 1, niter },
      );
      const [A, B] = layerOf(lm, path).factors("default");
      expect(maxAbsDiff(A, fromList(ref.A, A.shape))).toBeLessThan(1e-5);
      expect(maxAbsDiff(B, fromList(ref.B, B.shape))).toBeLessThan(1e-5);
      expect(maxAbsDiff(layerOf(lm, path).base_layer.weight, fromList(ref.res, W[path].shape))).toBeLessThan(1e-5);
    }
  });

  itTorch("olora: A = R[:r], B = Q[:, :r] from torch.linalg.qr(W) in fp32; W ← W − s·B·A", () => {
    const { model, W } = block();
    const lm = lora.injectAdapter(model, { r: 5, loraAlpha: 10, targetModules: ["up", "q"], initLoraWeights: "olora" });
    for (const path of ["up", "q"] as const) {
      const ref = py<{ A: number[]; B: number[]; res: number[] }>(
        `
W = torch.tensor(inp["W"], dtype=torch.float32).reshape(inp["shape"])
r = inp["r"]; s = inp["s"]
Q, R = torch.linalg.qr(W)
A = R[:r].contiguous(); B = Q[:, :r].contiguous()
out = {"A": L(A), "B": L(B), "res": L(W - s * B @ A)}
`,
        { W: valuesOf(W[path]), shape: W[path].shape, r: 5, s: 2 },
      );
      const [A, B] = layerOf(lm, path).factors("default");
      expect(maxAbsDiff(A, fromList(ref.A, A.shape))).toBeLessThan(1e-5);
      expect(maxAbsDiff(B, fromList(ref.B, B.shape))).toBeLessThan(1e-5);
      expect(maxAbsDiff(layerOf(lm, path).base_layer.weight, fromList(ref.res, W[path].shape))).toBeLessThan(1e-5);
    }
  });

  itTorch("orthogonal: PEFT's construction (odd/even rows of a random orthogonal r×r matrix, /10) from the same seed", () => {
    const { model } = block();
    manualSeed(5);
    const lm = lora.injectAdapter(model, { r: 6, loraAlpha: 6, targetModules: ["up"], initLoraWeights: "orthogonal" });
    const ref = py<{ A: number[]; B: number[] }>(
      `
r = 6; n_in = 12; n_out = 20
torch.manual_seed(5)
torch.nn.init.kaiming_uniform_(torch.empty(r, n_in, dtype=torch.float32), a=math.sqrt(5))
X = torch.randn(r, r, dtype=torch.float32)
Q, _ = torch.linalg.qr(X)
A = torch.randn(n_in, r // 2, dtype=torch.float32).mm(Q[0::2, :]).T / 10.0
B = torch.randn(r // 2, n_out, dtype=torch.float32).T.mm(Q[1::2, :]) / 10.0
out = {"A": L(A), "B": L(B)}
`,
    );
    const [A, B] = layerOf(lm, "up").factors("default");
    expect(maxAbsDiff(A, fromList(ref.A, [6, 12]))).toBeLessThan(1e-6);
    expect(maxAbsDiff(B, fromList(ref.B, [20, 6]))).toBeLessThan(1e-6);
    expect(B.matmul(A).abs().max().item()).toBeLessThan(1e-6);
  });

  test("unmerge restores the residual base bit for bit, and merge gives back the original weight", () => {
    const { model, x, W } = block();
    const lm = lora.injectAdapter(model, { r: 4, loraAlpha: 8, targetModules: ["q", "proj"], initLoraWeights: "pissa" });
    const residual = layerOf(lm, "q").base_layer.weight.clone();
    const out = lm.forward(x);
    lm.merge();
    expect(maxAbsDiff(layerOf(lm, "q").base_layer.weight, W.q)).toBeLessThan(1e-5);
    expect(maxAbsDiff(lm.forward(x), out)).toBeLessThan(1e-5);
    lm.unmerge();
    expect(layerOf(lm, "q").base_layer.weight.equal(residual)).toBe(true);
  });

  test("bfloat16 base: the residual is stored in the base dtype and the output stays the base output to bf16 round-off", () => {
    manualSeed(9);
    const model = new Holder({ fc: new nn.Linear(16, 16, { dtype: "bfloat16" }) });
    const fc = model.fc as nn.Linear;
    const x = randn([3, 16]).to({ dtype: "bfloat16" });
    const before = fc.forward(x).to({ dtype: "float32" });
    const lm = lora.injectAdapter(model, { r: 4, loraAlpha: 4, targetModules: ["fc"], initLoraWeights: "pissa" });
    expect(layerOf(lm, "fc").base_layer.weight.dtype).toBe("bfloat16");
    const after = (lm.forward(x) as Tensor).to({ dtype: "float32" });
    expect(maxAbsDiff(after, before)).toBeLessThan(0.05 * before.abs().max().item());
  });

  test("refusals name the argument and change nothing", () => {
    const cases: [lora.LoraConfig, RegExp][] = [
      [{ r: 2, targetModules: ["emb", "fc1"], initLoraWeights: "pissa" }, /initLoraWeights: "pissa" applies to Linear and Conv1D layers only.*emb/],
      [{ r: 3, targetModules: ["fc1"], initLoraWeights: "orthogonal" }, /LoraConfig\.r: "orthogonal" init needs an even rank, got 3/],
      [{ r: 9, targetModules: ["fc1"], initLoraWeights: "olora" }, /LoraConfig\.r: "olora" init needs r <= min\(out, in\) = 8, got 9.*fc1/],
      [{ r: 2, targetModules: ["fc1"], initLoraWeights: "pissa_niter_x" as never }, /LoraConfig\.initLoraWeights: expected .*"pissa_niter_N"/],
    ];
    for (const [config, message] of cases) {
      manualSeed(1);
      const model = new Holder({ emb: new nn.Embedding(10, 8), fc1: new nn.Linear(8, 16) });
      const before = model.namedParameters().map(([n, p]) => [n, p.toBytes()] as const);
      expect(() => lora.injectAdapter(model, config)).toThrow(ConfigError);
      expect(() => lora.injectAdapter(model, config)).toThrow(message);
      expect(model.namedModules().some(([, m]) => m instanceof lora.LoraLayer)).toBe(false);
      for (const [n, bytes] of before)
        expect(
          model
            .namedParameters()
            .find(([m]) => m === n)![1]
            .toBytes()
            .equals(bytes),
        ).toBe(true);
    }
  });
});
