/**
 * The adapter bookkeeping of a LoRA layer used on its own (LoraLinear / LoraEmbedding, without a
 * LoraModel around it): every refusal by its exact message with the layer left as it was, the
 * copies its getters return, what deleting or replacing an adapter leaves behind, the
 * distributions `initLoraWeights: false` draws from, and `deltaWeight` of half-precision factors
 * against s·B·A computed in float64.
 */
import { ConfigError, StateError, Tensor, init, lora, manualSeed, nn, noGrad, randn } from "../../lib";
import { messageOf, thrownBy } from "../helpers/errors";
import { maxAbsDiff, meanStd } from "../helpers/stats";

const INIT = { initLoraWeights: true, embeddingInit: "a-normal", embeddingInitStd: 1 } as const;
const settings = (r: number, scale = 0.5) => ({ r, alpha: r * scale, scale, dropout: 0 });

/** A Linear 4 → 3 wrapped, with adapters `names` (rank 2, B random so each delta counts). */
function linearLayer(...names: string[]): lora.LoraLinear {
  manualSeed(3);
  const layer = new lora.LoraLinear(new nn.Linear(4, 3));
  for (const name of names) {
    layer.addAdapter(name, settings(2), INIT);
    noGrad(() => init.normal_(layer.factors(name)[1]));
  }
  return layer;
}

/** Every stateDict entry as name and bytes: equal strings mean the same keys and the same bits. */
function bytesOf(m: nn.Module): string {
  return Object.entries(m.stateDict())
    .map(([k, t]) => `${k}=${t.toBytes().toString("hex")}`)
    .join("|");
}

/** W + Σ s·B·A over `names`, in float64 from the layer's own tensors. */
function mergedWeight(layer: lora.LoraLinear, pristine: Tensor, names: string[]): Tensor {
  let w = pristine.to({ dtype: "float64" });
  for (const name of names) {
    const [A, B] = layer.factors(name).map((f) => f.detach().to({ dtype: "float64" }));
    w = w.add(B.matmul(A).mul(layer.settings(name)!.scale));
  }
  return w;
}

describe("a layer refuses what it cannot wrap or read, naming the argument", () => {
  test("a LoraLinear over an Embedding, a LoraEmbedding over a Linear", () => {
    expect(messageOf(() => new lora.LoraLinear(new nn.Embedding(3, 3) as never), TypeError)).toBe(
      "base: expected an nn.Linear or nn.Conv1D to wrap, got a Embedding",
    );
    expect(messageOf(() => new lora.LoraEmbedding(new nn.Linear(3, 3) as never), TypeError)).toBe("base: expected an nn.Embedding to wrap, got a Linear");
  });

  test("forward of something that is not a tensor", () => {
    expect(messageOf(() => linearLayer("a").forward("x" as never), TypeError)).toBe('input: expected a Tensor, got the string "x"');
    const emb = new lora.LoraEmbedding(new nn.Embedding(5, 2));
    emb.addAdapter("a", settings(2), INIT);
    expect(messageOf(() => emb.forward(5 as never), TypeError)).toBe("ids: expected a Tensor, got 5");
  });
});

describe("merge options", () => {
  test("options that are not an object, adapterNames that is not an array, an unknown name: refused, nothing merged", () => {
    const layer = linearLayer("a", "b");
    const before = bytesOf(layer);
    expect(messageOf(() => layer.merge(null as never), TypeError)).toBe("options: expected an options object, got null");
    expect(messageOf(() => layer.merge({ adapterNames: "a" as never }), TypeError)).toBe(
      'adapterNames: expected an array of adapter names, got the string "a"',
    );
    expect(messageOf(() => layer.merge({ adapterNames: ["a", "zz"] }), RangeError)).toBe(
      'adapterNames: no adapter the string "zz" in this layer (adapters: a, b)',
    );
    expect(layer.mergedAdapters).toEqual([]);
    expect(bytesOf(layer)).toBe(before);
  });

  test("a name given twice is merged once", () => {
    const layer = linearLayer("a", "b");
    const pristine = layer.base_layer.weight.detach().clone();
    expect(layer.merge({ adapterNames: ["a", "a"] })).toEqual(["a"]);
    expect(layer.mergedAdapters).toEqual(["a"]);
    expect(maxAbsDiff(layer.base_layer.weight, mergedWeight(layer, pristine, ["a"]))).toBeLessThan(1e-6);
    layer.unmerge();
    expect(layer.base_layer.weight.equal(pristine)).toBe(true);
  });
});

describe("state refusals leave the layer as it was", () => {
  test("replacing or deleting a merged adapter", () => {
    const layer = linearLayer("a", "b");
    layer.merge({ adapterNames: ["a"] });
    const before = bytesOf(layer);
    expect(messageOf(() => layer.addAdapter("a", settings(3), INIT), StateError)).toBe('adapter "a" is merged; unmerge() before replacing it');
    expect(messageOf(() => layer.deleteAdapter("a"), StateError)).toBe('cannot delete adapter "a": it is merged into the base weight; unmerge() first');
    expect(bytesOf(layer)).toBe(before);
    expect(layer.adapterNames).toEqual(["a", "b"]);
    expect(layer.settings("a")!.r).toBe(2);
  });

  test("loading into a layer with merged adapters names them all", () => {
    const layer = linearLayer("a", "b");
    layer.merge({ adapterNames: ["a", "b"] });
    const before = bytesOf(layer);
    expect(messageOf(() => layer.loadStateDict(layer.stateDict()), StateError)).toBe(
      "loadStateDict: this layer has merged adapters (a, b); unmerge() first, load, then merge() again",
    );
    expect(bytesOf(layer)).toBe(before);
  });

  test("every mutating call while an async merge runs names itself; nothing changes", async () => {
    const layer = linearLayer("a", "b");
    const pending = layer.mergeAsync({ adapterNames: ["a"] });
    const refused = (op: string) => `${op}: an async merge is in flight on this layer; await it first`;
    expect(messageOf(() => layer.addAdapter("c", settings(2), INIT), StateError)).toBe(refused("addAdapter"));
    expect(messageOf(() => layer.deleteAdapter("b"), StateError)).toBe(refused("deleteAdapter"));
    expect(messageOf(() => layer.replaceSettings("b", settings(2, 1)), StateError)).toBe(refused("hotswap"));
    expect(messageOf(() => layer.setActiveAdapters(["b"]), StateError)).toBe(refused("setAdapter"));
    expect(messageOf(() => layer.setDisabled(true), StateError)).toBe(refused("disableAdapters"));
    expect(messageOf(() => layer.setDisabled(false), StateError)).toBe(refused("enableAdapters"));
    expect(await pending).toEqual(["a"]);
    expect(layer.adapterNames).toEqual(["a", "b"]);
    expect(layer.activeAdapters).toEqual(["a"]);
    expect(layer.disabled).toBe(false);
    expect(layer.settings("b")!.scale).toBe(0.5);
  });

  test("new settings for an adapter the layer lacks", () => {
    const layer = linearLayer("a");
    expect(messageOf(() => layer.replaceSettings("zz", settings(2)), RangeError)).toBe('adapterName: no adapter the string "zz" in this layer (adapters: a)');
    expect(layer.adapterNames).toEqual(["a"]);
  });

  test("ending a disabled scope that was never entered", () => {
    const layer = linearLayer("a");
    expect(messageOf(() => layer.exitDisabledScope(), StateError)).toBe("withAdaptersDisabled: no scope to end on this layer");
    expect(layer.disabled).toBe(false);
    // The layer is not left holding a scope: it still changes freely.
    layer.setActiveAdapters([]);
    expect(layer.activeAdapters).toEqual([]);
  });

  test("enabling adapters on a merged layer keeps the merge (only disabling unmerges)", () => {
    const layer = linearLayer("a");
    const pristine = layer.base_layer.weight.detach().clone();
    layer.merge();
    const merged = layer.base_layer.weight.detach().clone();
    layer.setDisabled(false);
    expect(layer.mergedAdapters).toEqual(["a"]);
    expect(layer.base_layer.weight.equal(merged)).toBe(true);
    layer.setDisabled(true);
    expect(layer.merged).toBe(false);
    expect(layer.base_layer.weight.equal(pristine)).toBe(true);
  });
});

describe("weight-aware inits on a layer", () => {
  test("a rank the decomposition cannot give, and an Embedding: refused before any factor exists", () => {
    const layer = linearLayer();
    const before = bytesOf(layer);
    expect(messageOf(() => layer.addAdapter("p", settings(4), { ...INIT, initLoraWeights: "pissa" }), ConfigError)).toBe(
      'LoraConfig.r: "pissa" init needs r <= min(out, in) = 3, got 4',
    );
    expect(messageOf(() => layer.addAdapter("o", settings(3), { ...INIT, initLoraWeights: "orthogonal" }), ConfigError)).toBe(
      'LoraConfig.r: "orthogonal" init needs an even rank, got 3',
    );
    const emb = new lora.LoraEmbedding(new nn.Embedding(5, 4));
    const embBefore = bytesOf(emb);
    expect(messageOf(() => emb.addAdapter("o", settings(2), { ...INIT, initLoraWeights: "olora" }), ConfigError)).toBe(
      'LoraConfig.initLoraWeights: "olora" applies to Linear and Conv1D layers only (PEFT defines it for no Embedding); exclude the embedding from targetModules or use another init',
    );
    expect(bytesOf(layer)).toBe(before);
    expect(bytesOf(emb)).toBe(embBefore);
    expect(layer.adapterNames).toEqual([]);
  });

  test("a decomposition that fails on a non-finite weight leaves no factors behind", () => {
    const layer = new lora.LoraLinear(new nn.Linear(4, 3));
    noGrad(() => init.constant_(layer.base_layer.weight, NaN));
    const before = bytesOf(layer);
    // A native error (its own realm): checked by tag and message.
    expect(thrownBy(() => layer.addAdapter("p", settings(2), { ...INIT, initLoraWeights: "pissa" })).message).toMatch(/non-finite/);
    expect(bytesOf(layer)).toBe(before);
    expect(layer.adapterNames).toEqual([]);
    expect(layer.activeAdapters).toEqual([]);
  });

  test("replacing an adapter by one whose decomposition fails keeps the adapter it replaced, tensors and all", () => {
    const layer = linearLayer("a");
    const [A, B] = layer.factors("a");
    noGrad(() => init.constant_(layer.base_layer.weight, NaN));
    const before = bytesOf(layer);
    expect(thrownBy(() => layer.addAdapter("a", settings(3), { ...INIT, initLoraWeights: "pissa" })).message).toMatch(/non-finite/);
    expect(bytesOf(layer)).toBe(before);
    expect(layer.settings("a")!.r).toBe(2);
    // The very tensors an optimizer may hold, not copies.
    expect(layer.factors("a")[0]).toBe(A);
    expect(layer.factors("a")[1]).toBe(B);
  });
});

describe("getters return copies", () => {
  test("changing what settings, activeAdapters and mergedAdapters returned changes nothing", () => {
    const layer = linearLayer("a", "b");
    layer.merge({ adapterNames: ["b"] });
    layer.settings("a")!.scale = 100;
    layer.activeAdapters.push("b");
    layer.mergedAdapters.push("a");
    expect(layer.settings("a")!.scale).toBe(0.5);
    expect(layer.activeAdapters).toEqual(["a"]);
    expect(layer.mergedAdapters).toEqual(["b"]);
  });
});

describe("deleting an adapter", () => {
  test("an active Linear adapter leaves the active set, its factors the stateDict", () => {
    const layer = linearLayer("a", "b");
    layer.setActiveAdapters(["a", "b"]);
    layer.deleteAdapter("a");
    expect(layer.adapterNames).toEqual(["b"]);
    expect(layer.activeAdapters).toEqual(["b"]);
    expect(Object.keys(layer.stateDict()).sort()).toEqual(["base_layer.bias", "base_layer.weight", "lora_A.b.weight", "lora_B.b.weight"]);
    // forward is the base plus b alone.
    const x = randn([2, 4]);
    const w = mergedWeight(layer, layer.base_layer.weight.detach(), ["b"]);
    const expected = x
      .to({ dtype: "float64" })
      .matmul(w.t())
      .add(layer.base_layer.bias!.to({ dtype: "float64" }));
    expect(maxAbsDiff(layer.forward(x), expected)).toBeLessThan(1e-5);
  });

  test("an Embedding adapter takes its factors with it", () => {
    const emb = new lora.LoraEmbedding(new nn.Embedding(5, 4));
    emb.addAdapter("a", settings(2), INIT);
    emb.addAdapter("b", settings(2), INIT);
    emb.deleteAdapter("a");
    expect(Object.keys(emb.stateDict()).sort()).toEqual(["base_layer.weight", "lora_embedding_A.b", "lora_embedding_B.b"]);
  });
});

describe("initLoraWeights: false leaves both factors random, as PEFT does", () => {
  test("Linear: both from kaiming_uniform(a = √5), bounds 1/√fan_in", () => {
    manualSeed(5);
    const layer = new lora.LoraLinear(new nn.Linear(64, 32));
    layer.addAdapter("a", settings(8), { ...INIT, initLoraWeights: false });
    const [A, B] = layer.factors("a");
    // kaiming_uniform with a = √5: bound = √(6 / ((1 + 5)·fan_in)) = 1/√fan_in; fan_in is dim 1.
    const a = meanStd(A);
    const b = meanStd(B);
    expect(Math.max(-a.min, a.max)).toBeLessThanOrEqual(1 / Math.sqrt(64));
    expect(Math.max(-b.min, b.max)).toBeLessThanOrEqual(1 / Math.sqrt(8));
    // 512 and 256 uniform draws: the largest comes close to the bound, and the spread is bound/√3.
    expect(Math.max(-a.min, a.max)).toBeGreaterThan(0.9 / Math.sqrt(64));
    expect(Math.max(-b.min, b.max)).toBeGreaterThan(0.9 / Math.sqrt(8));
    expect(Math.abs(a.std - 1 / Math.sqrt(64) / Math.sqrt(3))).toBeLessThan(0.1 / Math.sqrt(64));
    expect(Math.abs(b.std - 1 / Math.sqrt(8) / Math.sqrt(3))).toBeLessThan(0.1 / Math.sqrt(8));
  });

  test("Embedding: both from N(0, embeddingInitStd²)", () => {
    manualSeed(6);
    const emb = new lora.LoraEmbedding(new nn.Embedding(300, 64));
    emb.addAdapter("a", settings(8), { ...INIT, initLoraWeights: false, embeddingInitStd: 0.5 });
    const [A, B] = emb.factors("a");
    expect(A.shape).toEqual([8, 300]);
    expect(B.shape).toEqual([64, 8]);
    for (const f of [A, B]) {
      const { mean, std } = meanStd(f);
      expect(Math.abs(mean)).toBeLessThan(0.1);
      expect(Math.abs(std - 0.5)).toBeLessThan(0.06);
    }
  });
});

test("deltaWeight of float16 factors is s·B·A in float32, as computed in float64", () => {
  manualSeed(8);
  const layer = new lora.LoraLinear(new nn.Linear(6, 5, { dtype: "float16" }));
  layer.addAdapter("a", settings(3, 0.75), { ...INIT, autocastAdapterDtype: false });
  noGrad(() => init.normal_(layer.factors("a")[1]));
  const [A, B] = layer.factors("a");
  expect(A.dtype).toBe("float16");
  const delta = layer.deltaWeight("a");
  expect(delta.dtype).toBe("float32");
  expect(delta.shape).toEqual([5, 6]);
  // The float16 values are exact in float64: the only rounding left is float32's.
  const expected = B.detach()
    .to({ dtype: "float64" })
    .matmul(A.detach().to({ dtype: "float64" }))
    .mul(0.75);
  expect(maxAbsDiff(delta, expected)).toBeLessThan(1e-5);
});
