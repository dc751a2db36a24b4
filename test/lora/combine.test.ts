/**
 * addWeightedAdapter against PEFT's add_weighted_adapter and utils/merge_utils.py, re-implemented
 * independently in PyTorch over /usr/bin/python3, and the exact property of `cat`.
 */
import { ConfigError, Tensor, init, lora, manualSeed, nn, noGrad, randn, tensor } from "../../lib";
import { itTorch, py } from "../helpers/python";
import { maxAbsDiff, valuesOf } from "../helpers/stats";

class Net extends nn.Module {
  emb = new nn.Embedding(12, 8);
  fc1 = new nn.Linear(8, 16);
  head = new nn.Conv1D(12, 16);
  override forward(ids: Tensor): Tensor {
    return this.head.forward(this.fc1.forward(this.emb.forward(ids)).tanh());
  }
}

const PATHS = ["emb", "fc1", "head"] as const;
const ids = (): Tensor =>
  tensor(
    [
      [1, 2, 3, 4],
      [5, 6, 7, 11],
    ],
    { dtype: "int64" },
  );

/** A model with adapters a (r 4, α 8), b (r 4, α 2) and c (r 2, α 6), every factor random. */
function model(seed = 2): lora.LoraModel<Net> {
  manualSeed(seed);
  const lm = lora.injectAdapter(new Net(), { r: 4, loraAlpha: 8, targetModules: [...PATHS] }, "a");
  lm.addAdapter("b", { r: 4, loraAlpha: 2, targetModules: [...PATHS] });
  lm.addAdapter("c", { r: 2, loraAlpha: 6, targetModules: ["fc1", "head"] });
  noGrad(() => {
    for (const [, layer] of lm.loraLayers()) for (const n of layer.adapterNames) for (const f of layer.factors(n)) init.normal_(f, 0, 0.5);
  });
  return lm;
}

const layerOf = (lm: lora.LoraModel, path: string) => lm.loraLayers().find(([p]) => p === path)![1];

/** Output with only `name` active. */
function outputWith(lm: lora.LoraModel<Net>, name: string): Tensor {
  lm.setAdapter(name);
  return lm.forward(ids()) as Tensor;
}

/** PEFT's merge_utils and add_weighted_adapter, written out in PyTorch for the reference. */
const REFERENCE = `
def prune_magnitude(t, density):
    if density >= 1: return t
    k = int(density * t.numel())
    keep = torch.zeros(t.numel(), dtype=t.dtype)
    keep[torch.topk(t.abs().reshape(-1), k=k, largest=True).indices] = 1
    return t * keep.reshape(t.shape)

def prune_random(t, density):
    if density >= 1: return t
    return t * torch.bernoulli(torch.full_like(t, density))

def combine(kind, tensors, w, density, sign_method):
    if kind in ("ties", "magnitude_prune"): tensors = [prune_magnitude(t, density) for t in tensors]
    if kind in ("dare_linear", "dare_ties"): tensors = [prune_random(t, density) for t in tensors]
    T = torch.stack(tensors)
    W = w.view([-1] + [1] * (T.dim() - 1))
    if kind in ("ties", "dare_ties"):
        sign = T.sign()
        mag = sign.sum(0) if sign_method == "frequency" else T.sum(0)
        majority = torch.where(mag >= 0, 1.0, -1.0)
        mask = sign == majority
        return (T * W * mask).sum(0) / mask.sum(0).clamp(min=1)
    return (T * W).sum(0)

def reference(layers, kind, weights, density, sign_method, rank, seed):
    torch.manual_seed(seed)
    out = []
    for layer in layers:
        As = [torch.tensor(a["A"], dtype=torch.float32).reshape(a["shapeA"]) for a in layer]
        Bs = [torch.tensor(a["B"], dtype=torch.float32).reshape(a["shapeB"]) for a in layer]
        ws = [w * a["s"] for w, a in zip(weights, layer)]
        if kind.endswith("svd"):
            deltas = [b @ a * x["s"] for a, b, x in zip(As, Bs, layer)]
            d = combine("linear" if kind == "svd" else kind[:-4], deltas, torch.tensor(ws, dtype=torch.float32), density, sign_method)
            U, S, Vh = torch.linalg.svd(d, full_matrices=True)
            out.append({"A": L(Vh[:rank]), "B": L(U[:, :rank] @ torch.diag(S[:rank]))})
        else:
            wA = torch.tensor([math.copysign(math.sqrt(abs(x)), 1.0 if x >= 0 else -1.0) for x in ws], dtype=torch.float32)
            wB = torch.tensor([math.sqrt(abs(x)) for x in ws], dtype=torch.float32)
            out.append({"A": L(combine(kind, As, wA, density, sign_method)), "B": L(combine(kind, Bs, wB, density, sign_method))})
    return out
`;

function referenceFor(
  lm: lora.LoraModel,
  adapters: string[],
  kind: string,
  weights: number[],
  density: number,
  signMethod: string,
  rank: number,
  seed: number,
) {
  const layers = PATHS.map((p) =>
    adapters.map((n) => {
      const layer = layerOf(lm, p);
      const [A, B] = layer.factors(n);
      return { A: valuesOf(A), B: valuesOf(B), shapeA: A.shape, shapeB: B.shape, s: layer.settings(n)!.scale };
    }),
  );
  return py<{ A: number[]; B: number[] }[]>(
    `${REFERENCE}\nout = reference(inp["layers"], inp["kind"], inp["weights"], inp["density"], inp["sign"], inp["rank"], inp["seed"])`,
    {
      layers,
      kind,
      weights,
      density,
      sign: signMethod,
      rank,
      seed,
    },
  );
}

describe("addWeightedAdapter", () => {
  test("cat: the combined adapter's output is exactly the weighted sum of the adapters' outputs", () => {
    const lm = model();
    const weights = [0.7, -1.3, 0.4];
    lm.addWeightedAdapter(["a", "b", "c"], weights, "mix", { combinationType: "cat" });
    expect(lm.peftConfig.mix.r).toBe(10);
    expect(lm.peftConfig.mix.loraAlpha).toBe(10);
    expect(lm.activeAdapter).toBe("a");
    // Per layer: the combined delta equals Σ wᵢ·ΔWᵢ (embedding: only a and b are there; padded rows stay zero).
    for (const p of PATHS) {
      const layer = layerOf(lm, p);
      let expected = layer.deltaWeight("a").mul(weights[0]).add(layer.deltaWeight("b").mul(weights[1]));
      if (layer.adapterNames.includes("c")) expected = expected.add(layer.deltaWeight("c").mul(weights[2]));
      expect(maxAbsDiff(layer.deltaWeight("mix"), expected)).toBeLessThan(1e-5);
    }
    // Model level (the activations are nonlinear, so compare layer by layer above and the
    // whole model on the one adapter that spans every layer's input here: fc1's output).
    const x = randn([3, 8]);
    const fc1 = layerOf(lm, "fc1") as lora.LoraLinear;
    const base = fc1.base_layer.forward(x);
    const part = (n: string): Tensor => (fc1.setActiveAdapters([n]), fc1.forward(x).sub(base));
    const sum = part("a").mul(0.7).add(part("b").mul(-1.3)).add(part("c").mul(0.4));
    expect(maxAbsDiff(part("mix"), sum)).toBeLessThan(1e-5);
    expect(outputWith(lm, "mix").shape).toEqual([2, 4, 12]);
  });

  for (const [kind, density, sign] of [
    ["linear", 1, "total"],
    ["ties", 0.5, "total"],
    ["ties", 0.3, "frequency"],
    ["magnitude_prune", 0.6, "total"],
    ["dare_linear", 0.5, "total"],
    ["dare_ties", 0.7, "frequency"],
  ] as const) {
    itTorch(`${kind} (density ${density}, ${sign}): factors equal PEFT's formulas (random masks from the same seed)`, () => {
      const lm = model();
      const weights = [0.8, -0.5];
      const ref = referenceFor(lm, ["a", "b"], kind, weights, density, sign, 4, 31);
      manualSeed(31);
      lm.addWeightedAdapter(["a", "b"], weights, "mix", { combinationType: kind, density, majoritySignMethod: sign });
      PATHS.forEach((p, i) => {
        const [A, B] = layerOf(lm, p).factors("mix");
        expect(maxAbsDiff(A, tensor(ref[i].A, { shape: A.shape }))).toBeLessThan(1e-5);
        expect(maxAbsDiff(B, tensor(ref[i].B, { shape: B.shape }))).toBeLessThan(1e-5);
      });
      expect(lm.peftConfig.mix.r).toBe(4);
    });
  }

  for (const [kind, density] of [
    ["svd", 1],
    ["ties_svd", 0.5],
    ["magnitude_prune_svd", 0.5],
  ] as const) {
    itTorch(`${kind}: the rank-k product B·A equals PEFT's truncated SVD of the merged delta`, () => {
      const lm = model();
      const weights = [1.0, 0.6, -0.9];
      const ref = referenceFor(lm, ["a", "b"], kind, weights.slice(0, 2), density, "total", 3, 0);
      lm.addWeightedAdapter(["a", "b"], weights.slice(0, 2), "mix", { combinationType: kind, density, svdRank: 3 });
      PATHS.forEach((p, i) => {
        const [A, B] = layerOf(lm, p).factors("mix");
        const refA = tensor(ref[i].A, { shape: A.shape });
        const refB = tensor(ref[i].B, { shape: B.shape });
        expect(maxAbsDiff(B.matmul(A), refB.matmul(refA))).toBeLessThan(1e-4);
      });
      expect(lm.peftConfig.mix.r).toBe(3);
    });
  }

  test("dare keeps about `density` of the entries (statistics over a large layer)", () => {
    manualSeed(8);
    class Wide extends nn.Module {
      fc = new nn.Linear(200, 200);
      override forward(x: Tensor): Tensor {
        return this.fc.forward(x);
      }
    }
    const lm = lora.injectAdapter(new Wide(), { r: 8, loraAlpha: 8, targetModules: ["fc"] }, "a");
    lm.addAdapter("b", { r: 8, loraAlpha: 8, targetModules: ["fc"] });
    noGrad(() => {
      for (const n of ["a", "b"]) for (const f of layerOf(lm, "fc").factors(n)) init.normal_(f, 0, 1);
    });
    lm.addWeightedAdapter(["a", "b"], [1, 0], "mix", { combinationType: "dare_linear", density: 0.3 });
    const [A] = layerOf(lm, "fc").factors("mix");
    const kept = valuesOf(A).filter((v) => v !== 0).length / A.numel;
    // 1600 Bernoulli(0.3) draws: sd ≈ 0.0115, so 5 sd either side.
    expect(Math.abs(kept - 0.3)).toBeLessThan(0.06);
  });

  test("bad arguments are refused by name and change nothing", () => {
    const lm = model();
    const cases: [() => void, RegExp][] = [
      [() => lm.addWeightedAdapter(["a", "zz"], [1, 1], "m"), /adapters: no adapter the string "zz"/],
      [() => lm.addWeightedAdapter(["a", "b"], [1], "m"), /weights: expected 2 finite numbers/],
      [() => lm.addWeightedAdapter(["a", "b"], [1, 1], "a"), /adapterName: an adapter called "a" already exists/],
      [() => lm.addWeightedAdapter(["a", "b"], [1, 1], "m", { combinationType: "mean" as never }), /combinationType: expected one of cat, linear, svd/],
      [() => lm.addWeightedAdapter(["a", "b"], [1, 1], "m", { combinationType: "ties" }), /density: combinationType "ties" needs a density/],
      [() => lm.addWeightedAdapter(["a", "c"], [1, 1], "m", { combinationType: "linear" }), /needs adapters of one rank, got ranks 4, 2/],
      [() => lm.addWeightedAdapter(["a", "b"], [1, 1], "m", { combinationType: "svd", svdRank: 9 }), /svdRank: 9 exceeds min\(out, in\) = 8 of emb/],
      [() => lm.addWeightedAdapter(["a", "b"], [1, 1], "m", { combinationType: "dare_ties", density: 2 }), /density: expected a number in \[0, 1\], got 2/],
    ];
    for (const [call, message] of cases) {
      expect(call).toThrow(message);
      expect(lm.adapterNames).toEqual(["a", "b", "c"]);
    }
    expect(() => lm.addWeightedAdapter(["a", "c"], [1, 1], "m", { combinationType: "linear" })).toThrow(ConfigError);
  });
});
