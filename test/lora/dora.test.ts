/**
 * DoRA (useDora) against PEFT's DoraLinearLayer / DoraEmbeddingLayer formulas, computed
 * independently in PyTorch over /usr/bin/python3: forward, gradients (norm detached), merge;
 * plus exact unmerge, save/load in PEFT's layout and the refusals.
 */
import * as fs from "fs";
import * as path from "path";
import { StateError, Tensor, init, io, lora, manualSeed, mseLoss, nn, noGrad, optim, randn, tensor } from "../../lib";
import { itTorch, py } from "../helpers/python";
import { makeTempDir } from "../helpers/temp";
import { maxAbsDiff, valuesOf } from "../helpers/stats";

class Net extends nn.Module {
  emb = new nn.Embedding(12, 8, { paddingIdx: 0 });
  fc1 = new nn.Linear(8, 16);
  proj = new nn.Conv1D(6, 16);
  override forward(ids: Tensor): Tensor {
    return this.proj.forward(this.fc1.forward(this.emb.forward(ids)).tanh());
  }
}

const ids = (): Tensor =>
  tensor(
    [
      [0, 2, 3, 4],
      [5, 6, 7, 11],
    ],
    { dtype: "int64" },
  );
const layerOf = (lm: lora.LoraModel, p: string) => lm.loraLayers().find(([q]) => q === p)![1];

function doraModel(seed = 6, perturb = true): lora.LoraModel<Net> {
  manualSeed(seed);
  const net = new Net();
  const lm = lora.injectAdapter(net, { r: 4, loraAlpha: 8, targetModules: ["emb", "fc1", "proj"], useDora: true });
  if (perturb) {
    noGrad(() => {
      for (const [, layer] of lm.loraLayers()) {
        for (const f of layer.factors("default")) init.normal_(f, 0, 0.4);
        init.uniform_(layer.magnitude("default")!, 0.5, 2);
      }
    });
  }
  return lm;
}

describe("DoRA", () => {
  test("at step 0 the output equals the base output, and m = ‖W‖ per output feature", () => {
    manualSeed(6);
    const net = new Net();
    const before = net.forward(ids());
    const W = net.fc1.weight.clone();
    const lm = lora.injectAdapter(net, { r: 4, loraAlpha: 8, targetModules: ["emb", "fc1", "proj"], useDora: true });
    expect(maxAbsDiff(lm.forward(ids()) as Tensor, before)).toBeLessThan(1e-5);
    const m = layerOf(lm, "fc1").magnitude("default")!;
    expect(m.shape).toEqual([16]);
    expect(maxAbsDiff(m, W.pow(2).sum(1).sqrt())).toBeLessThan(1e-6);
    expect(layerOf(lm, "emb").magnitude("default")!.shape).toEqual([8]);
    expect(layerOf(lm, "proj").magnitude("default")!.shape).toEqual([6]);
    expect(lm.trainableParameters()).toContain(m);
  });

  itTorch("forward and gradients of A, B and m equal PEFT's formulas (Linear, Conv1D, Embedding with padding)", () => {
    const lm = doraModel();
    lm.eval();
    const x = ids();
    const out = lm.forward(x) as Tensor;
    out.pow(2).sum().backward();
    const layers = Object.fromEntries(
      ["emb", "fc1", "proj"].map((p) => {
        const l = layerOf(lm, p);
        const [A, B] = l.factors("default");
        const base = l.base_layer as nn.Module & { weight: Tensor; bias?: Tensor };
        return [
          p,
          {
            W: valuesOf(base.weight),
            Ws: base.weight.shape,
            b: base.bias ? valuesOf(base.bias) : null,
            A: valuesOf(A),
            As: A.shape,
            B: valuesOf(B),
            Bs: B.shape,
            m: valuesOf(l.magnitude("default")!),
            s: l.settings("default")!.scale,
          },
        ];
      }),
    );
    const ref = py<Record<string, number[]>>(
      `
def T(d, k, shape_key):
    return torch.tensor(d[k], dtype=torch.float32).reshape(d[shape_key]).requires_grad_(k in ("A", "B", "m"))
P = {}
for name, d in inp["layers"].items():
    P[name] = {"W": T(d, "W", "Ws"), "A": T(d, "A", "As"), "B": T(d, "B", "Bs"), "m": torch.tensor(d["m"], dtype=torch.float32).requires_grad_(True), "s": d["s"],
               "b": None if d["b"] is None else torch.tensor(d["b"], dtype=torch.float32)}
ids = torch.tensor(inp["ids"])

# PEFT's DoraEmbeddingLayer: norm of (Wᵀ + s·B·A) per row (embedding dim), detached
e = P["emb"]
norm = torch.linalg.norm(e["W"].T + e["s"] * (e["B"] @ e["A"]).detach(), dim=1).detach()
scale = e["m"] / norm
h = scale * torch.nn.functional.embedding(ids, e["W"], padding_idx=0) + scale * (torch.nn.functional.embedding(ids, e["A"].T, padding_idx=0) @ e["B"].T) * e["s"]

# PEFT's DoraLinearLayer (eval: base_result reused, bias subtracted)
def dora_linear(p, x, fan_in_fan_out):
    W = p["W"].T if fan_in_fan_out else p["W"]
    norm = torch.linalg.norm(W + p["s"] * (p["B"] @ p["A"]).detach(), dim=1).detach()
    mns = (p["m"] / norm).view(1, -1)
    result = torch.nn.functional.linear(x, W, p["b"])
    base_result = result - p["b"] if p["b"] is not None else result
    return result + (mns - 1) * base_result + mns * (x @ p["A"].T @ p["B"].T) * p["s"]

y = dora_linear(P["proj"], torch.tanh(dora_linear(P["fc1"], h, False)), True)
(y ** 2).sum().backward()
out = {"y": L(y)}
for name, p in P.items():
    out[name + ".A"] = L(p["A"].grad); out[name + ".B"] = L(p["B"].grad); out[name + ".m"] = L(p["m"].grad)
`,
      {
        layers,
        ids: [
          [0, 2, 3, 4],
          [5, 6, 7, 11],
        ],
      },
    );
    expect(maxAbsDiff(out, tensor(ref.y, { shape: out.shape }))).toBeLessThan(1e-4);
    for (const p of ["emb", "fc1", "proj"]) {
      const l = layerOf(lm, p);
      const [A, B] = l.factors("default");
      const m = l.magnitude("default")!;
      const rel = (g: Tensor, r: number[]): number => maxAbsDiff(g, tensor(r, { shape: g.shape })) / Math.max(1, tensor(r).abs().max().item());
      expect(rel(A.grad!, ref[`${p}.A`])).toBeLessThan(1e-4);
      expect(rel(B.grad!, ref[`${p}.B`])).toBeLessThan(1e-4);
      expect(rel(m.grad!, ref[`${p}.m`])).toBeLessThan(1e-4);
    }
  });

  test("merge gives the DoRA output with plain layers, the merged weight is (m/n)·(W + s·B·A), and unmerge is bit-exact", async () => {
    const lm = doraModel();
    lm.eval();
    const out = lm.forward(ids()) as Tensor;
    const fc1 = layerOf(lm, "fc1");
    const W = fc1.base_layer.weight.clone();
    const pristine = fc1.base_layer.weight.toBytes();
    const [A, B] = fc1.factors("default");
    const m = fc1.magnitude("default")!;
    const combined = W.add(B.matmul(A).mul(2));
    const expected = combined.mul(m.div(combined.pow(2).sum(1).sqrt()).reshape([16, 1]));
    lm.merge();
    expect(maxAbsDiff(fc1.base_layer.weight, expected)).toBeLessThan(1e-5);
    expect(maxAbsDiff(lm.forward(ids()) as Tensor, out)).toBeLessThan(1e-5);
    lm.unmerge();
    expect(fc1.base_layer.weight.toBytes().equals(pristine)).toBe(true);
    await lm.mergeAsync();
    expect(maxAbsDiff(lm.forward(ids()) as Tensor, out)).toBeLessThan(1e-5);
    await lm.unmergeAsync();
    expect(fc1.base_layer.weight.toBytes().equals(pristine)).toBe(true);
  });

  test("saves PEFT's layout (lora_magnitude_vector, use_dora: true) and loads it back", () => {
    const lm = doraModel();
    lm.eval();
    const out = lm.forward(ids()) as Tensor;
    const dir = makeTempDir("tl-dora-");
    lm.saveAdapter(dir);
    const config = JSON.parse(fs.readFileSync(path.join(dir, "adapter_config.json"), "utf8"));
    expect(config.use_dora).toBe(true);
    const tensors = io.loadSafetensorsSync(path.join(dir, "adapter_model.safetensors"));
    expect(
      Object.keys(tensors)
        .filter((k) => k.endsWith("lora_magnitude_vector"))
        .sort(),
    ).toEqual(["emb", "fc1", "proj"].map((p) => `base_model.model.${p}.lora_magnitude_vector`));
    expect(tensors["base_model.model.fc1.lora_magnitude_vector"].shape).toEqual([16]);
    manualSeed(6);
    const loaded = lora.loadAdapter(new Net(), dir);
    expect(maxAbsDiff(loaded.forward(ids()) as Tensor, out)).toBeLessThan(1e-6);
    expect(layerOf(loaded, "fc1").magnitude("default")!.requiresGrad).toBe(false);
  });

  test("with a PiSSA init, m is fitted after the decomposition: step 0 still gives the original output", () => {
    manualSeed(6);
    const net = new Net();
    const before = net.forward(ids());
    const W = net.fc1.weight.clone();
    const lm = lora.injectAdapter(net, { r: 4, loraAlpha: 8, targetModules: ["fc1", "proj"], useDora: true, initLoraWeights: "pissa" });
    expect(maxAbsDiff(lm.forward(ids()) as Tensor, before)).toBeLessThan(1e-5);
    // The base holds the residual; m = ‖residual + s·B·A‖ = ‖W‖.
    expect(maxAbsDiff(layerOf(lm, "fc1").base_layer.weight, W)).toBeGreaterThan(1e-2);
    expect(maxAbsDiff(layerOf(lm, "fc1").magnitude("default")!, W.pow(2).sum(1).sqrt())).toBeLessThan(1e-5);
  });

  test("a DoRA adapter runs alone on its layer: stacking is refused by name", () => {
    const lm = doraModel();
    lm.addAdapter("plain", { r: 2, targetModules: ["fc1"] });
    lm.setAdapter(["default", "plain"]);
    expect(() => lm.forward(ids())).toThrow(StateError);
    expect(() => lm.forward(ids())).toThrow(/DoRA adapter "default" must be the only active adapter of its layer/);
    lm.setAdapter("default");
    expect(() => lm.forward(ids())).not.toThrow();
    expect(() => lm.addWeightedAdapter(["default", "plain"], [1, 1], "mix", { combinationType: "cat" })).toThrow(
      /DoRA adapters \(default\) cannot be combined/,
    );
  });

  test("trains: AdamW steps move m, A and B and lower the loss", () => {
    const lm = doraModel(3, false);
    lm.train();
    const x = randn([4, 8]);
    const fc1 = layerOf(lm, "fc1") as lora.LoraLinear;
    const target = randn([4, 16]);
    const loss = (): Tensor => mseLoss(fc1.forward(x), target);
    const before = fc1.adapterParameters("default").map((t) => t.clone());
    const opt = new optim.AdamW(lm.trainableParameters(), { lr: 0.02 });
    const first = loss().item();
    for (let i = 0; i < 30; i++) {
      opt.zeroGrad();
      loss().backward();
      opt.step();
    }
    expect(loss().item()).toBeLessThan(0.9 * first);
    fc1.adapterParameters("default").forEach((t, i) => expect(t.equal(before[i])).toBe(false));
  });
});
