import { Tensor, init, lora, manualSeed, noGrad, nn, optim, randn, tensor, StateError } from "../../lib";
import type { Dtype } from "../../lib";
import { TinyModel, snapshot, changedParameters } from "../helpers/models";

/** W + s·BA (s·(BA)ᵀ for embeddings and Conv1D) for adapter `name` of `layer`, computed with plain ops. */
function mergedByFormula(layer: lora.LoraLinear | lora.LoraEmbedding, name: string, W: Tensor): Tensor {
  const [A, B] = layer.factors(name).map((t) => t.detach());
  const delta = B.matmul(A).mul(layer.settings(name)!.scale);
  return W.add(layer instanceof lora.LoraEmbedding || layer.base_layer instanceof nn.Conv1D ? delta.t() : delta);
}

/** A TinyModel with all three layers adapted and nonzero B (so merges change weights). */
function adapted(dtype: Dtype = "float32", seed = 11) {
  manualSeed(seed);
  const model = new TinyModel({ dtype, activation: dtype !== "float16" });
  const lm = lora.injectAdapter(model, { r: 4, loraAlpha: 8, targetModules: ["emb", "fc1", "head"] });
  for (const [, layer] of lm.loraLayers()) init.normal_(layer.factors("default")[1], 0, 0.3);
  return { model, lm };
}
const ids = () =>
  tensor(
    [
      [1, 2, 3, 4],
      [5, 6, 7, 8],
    ],
    { dtype: "int64" },
  );
/** Nonzero B for every adapter of every layer. */
function randomizeFactors(lm: lora.LoraModel): void {
  for (const [, layer] of lm.loraLayers()) for (const name of layer.adapterNames) init.normal_(layer.factors(name)[1], 0, 0.3);
}

describe("merge", () => {
  test("merged forward equals unmerged forward (fp32, 1e-5 relative)", () => {
    const { lm } = adapted();
    const unmerged = lm.forward(ids());
    lm.merge();
    const merged = lm.forward(ids());
    expect(merged.allclose(unmerged, { rtol: 1e-5, atol: 1e-6 })).toBe(true);
  });

  test("the merged delta is s·BA (Linear) and s·(BA)ᵀ (Embedding)", () => {
    const { model, lm } = adapted();
    const fc1 = model.fc1 as unknown as lora.LoraLinear;
    const emb = model.emb as unknown as lora.LoraEmbedding;
    const W1 = fc1.base_layer.weight.clone();
    const We = emb.base_layer.weight.clone();
    const [A1, B1] = fc1.factors("default");
    const [Ae, Be] = emb.factors("default");
    lm.merge();
    expect(fc1.base_layer.weight.sub(W1).allclose(B1.matmul(A1).mul(2), { atol: 1e-5 })).toBe(true);
    expect(emb.base_layer.weight.sub(We).allclose(Be.matmul(Ae).t().mul(2), { atol: 1e-5 })).toBe(true);
  });

  for (const dtype of ["float32", "float16", "bfloat16"] as Dtype[]) {
    test(`unmerge is bit-exact after 10 merge/unmerge cycles (${dtype})`, () => {
      const { model, lm } = adapted(dtype);
      const before = snapshot(model);
      for (let i = 0; i < 10; i++) {
        lm.merge();
        expect(changedParameters(before, snapshot(model)).length).toBeGreaterThan(0);
        lm.unmerge();
        // Every unmerge, the first one included, restores the pristine bytes.
        expect([i, changedParameters(before, snapshot(model))]).toEqual([i, []]);
      }
    });
  }

  test("unmerge after withAdaptersDisabled on a merged model restores the pristine weights bit for bit", () => {
    const { model, lm } = adapted("bfloat16");
    const before = snapshot(model);
    const baseOut = lm.withAdaptersDisabled(() => lm.forward(ids()) as Tensor);
    lm.merge();
    const merged = snapshot(model);
    const inside = lm.withAdaptersDisabled(() => lm.forward(ids()) as Tensor);
    expect(inside.equal(baseOut)).toBe(true); // inside: the pristine base, bit for bit
    expect(changedParameters(merged, snapshot(model))).toEqual([]);
    lm.unmerge();
    expect(changedParameters(before, snapshot(model))).toEqual([]);
  });

  test.each(["sync", "async"] as const)(
    "a second adapter merged while one is merged keeps the pristine backup: unmerge restores the base (%s)",
    async (mode) => {
      const { model, lm } = adapted();
      lm.addAdapter("other", { r: 2, loraAlpha: 2, targetModules: ["fc1", "head"] });
      for (const [, layer] of lm.loraLayers()) if (layer.adapterNames.includes("other")) init.normal_(layer.factors("other")[1], 0, 0.3);
      const pristine = snapshot(model);
      const fc1 = model.fc1 as unknown as lora.LoraLinear;
      const W = fc1.base_layer.weight.clone();
      const merge = (names: string[]) => (mode === "sync" ? lm.merge({ adapterNames: names }) : lm.mergeAsync({ adapterNames: names }));
      await merge(["default"]);
      await merge(["other"]);
      expect(fc1.mergedAdapters).toEqual(["default", "other"]);
      expect(fc1.base_layer.weight.allclose(mergedByFormula(fc1, "other", mergedByFormula(fc1, "default", W)), { rtol: 1e-5, atol: 1e-5 })).toBe(true);
      if (mode === "sync") lm.unmerge();
      else await lm.unmergeAsync();
      expect(changedParameters(pristine, snapshot(model))).toEqual([]);
    },
  );

  test("a layer's merge returns the names it merged, and [] when all are merged already", async () => {
    const { model } = adapted();
    const fc1 = model.fc1 as unknown as lora.LoraLinear;
    expect(fc1.merge()).toEqual(["default"]);
    const merged = fc1.base_layer.weight.toBytes();
    expect(fc1.merge()).toEqual([]);
    expect(await fc1.mergeAsync()).toEqual([]);
    expect(fc1.base_layer.weight.toBytes().equals(merged)).toBe(true);
  });

  test("a merged model refuses to move or cast, naming the fix, and moves once unmerged", () => {
    const { lm } = adapted();
    lm.merge();
    expect(() => lm.to({ dtype: "float64" })).toThrow(StateError);
    expect(() => lm.to({ dtype: "float64" })).toThrow(/^to: this layer has merged adapters; unmerge\(\) before moving or casting the model$/);
    lm.unmerge();
    lm.to({ dtype: "float64" });
    expect(lm.trainableParameters().every((p) => p.dtype === "float64")).toBe(true);
  });

  test("withAdaptersDisabled on an unmerged model leaves no backup behind: new base weights loaded later unmerge to themselves", () => {
    const { lm } = adapted();
    const fc1 = Object.fromEntries(lm.loraLayers()).fc1 as lora.LoraLinear;
    lm.withAdaptersDisabled(() => lm.forward(ids()));
    // New base weights, as a loadStateDict would bring: the next merge must back up these.
    noGrad(() => nn.copyInto(fc1.base_layer.weight, randn(fc1.base_layer.weight.shape)));
    const fresh = fc1.base_layer.weight.toBytes();
    lm.merge();
    lm.unmerge();
    expect(fc1.base_layer.weight.toBytes().equals(fresh)).toBe(true);
  });

  test("deltaWeight is s·BA (Linear), s·(BA)ᵀ (Embedding) and s·(BA)ᵀ (Conv1D), by hand in float64", () => {
    const { model } = adapted();
    manualSeed(17);
    const conv = new nn.Conv1D(3, 5); // weight (in 5, out 3)
    const convModel = lora.injectAdapter(new nn.Sequential(conv), { r: 2, loraAlpha: 3, targetModules: ["0"] });
    const convLayer = (convModel.model as nn.Sequential).at(0) as lora.LoraLinear;
    init.normal_(convLayer.factors("default")[1]);
    const layers: [string, lora.LoraLinear | lora.LoraEmbedding, number, boolean][] = [
      ["fc1", model.fc1 as unknown as lora.LoraLinear, 8 / 4, false],
      ["emb", model.emb as unknown as lora.LoraEmbedding, 8 / 4, true],
      ["conv1d", convLayer, 3 / 2, true],
    ];
    for (const [name, layer, s, transposed] of layers) {
      const [A, B] = layer.factors("default");
      const [r, cols] = A.shape;
      const rows = B.shape[0];
      const a = A.toList() as number[];
      const b = B.toList() as number[];
      const want: number[] = [];
      // (BA)[i][j] = Σ_k B[i][k]·A[k][j]; transposed layouts hold it at [j][i].
      const at = (i: number, j: number): number => s * Array.from({ length: r }, (_, k) => b[i * r + k] * a[k * cols + j]).reduce((x, y) => x + y, 0);
      if (transposed) for (let j = 0; j < cols; j++) for (let i = 0; i < rows; i++) want.push(at(i, j));
      else for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) want.push(at(i, j));
      const delta = layer.deltaWeight("default");
      expect([name, delta.shape]).toEqual([name, layer.base_layer.weight.shape]);
      expect([name, delta.dtype]).toEqual([name, "float32"]);
      const got = delta.toList() as number[];
      const worst = got.reduce((m, v, i) => Math.max(m, Math.abs(v - want[i]) / (1 + Math.abs(want[i]))), 0);
      expect({ name, within1e5: worst < 1e-5 }).toEqual({ name, within1e5: true });
    }
  });

  test("low precision: the delta is computed in fp32 and rounded once", () => {
    const { model, lm } = adapted("bfloat16");
    const fc1 = model.fc1 as unknown as lora.LoraLinear;
    const W = fc1.base_layer.weight.to({ dtype: "float32" });
    const [A, B] = fc1.factors("default").map((t) => t.to({ dtype: "float32" }));
    const expected = W.add(B.matmul(A).mul(2)).to({ dtype: "bfloat16" });
    lm.merge();
    expect(fc1.base_layer.weight.equal(expected)).toBe(true);
  });

  test("merging twice is a no-op and unmerging when nothing is merged is a no-op", () => {
    const { model, lm } = adapted();
    const pristine = snapshot(model);
    lm.unmerge();
    expect(changedParameters(pristine, snapshot(model))).toEqual([]);
    lm.merge();
    const once = snapshot(model);
    lm.merge();
    expect(changedParameters(once, snapshot(model))).toEqual([]);
  });

  test("safe merge refuses NaN and leaves every weight bit-identical", () => {
    const { model, lm } = adapted();
    const head = model.head as unknown as lora.LoraLinear;
    init.constant_(head.factors("default")[0], NaN);
    const before = snapshot(model);
    expect(() => lm.merge({ safe: true })).toThrow(/NaN or Inf/);
    expect(changedParameters(before, snapshot(model))).toEqual([]);
    for (const [, layer] of lm.loraLayers()) expect(layer.merged).toBe(false);
    // And the model still works: unmerge is a no-op, and once the factor is healthy again a
    // merge gives the unmerged output.
    lm.unmerge();
    expect(changedParameters(before, snapshot(model))).toEqual([]);
    init.normal_(head.factors("default")[0], 0, 0.3);
    const unmerged = lm.forward(ids()) as Tensor;
    lm.merge({ safe: true });
    expect(lm.loraLayers().map(([, l]) => l.mergedAdapters)).toEqual([["default"], ["default"], ["default"]]);
    expect((lm.forward(ids()) as Tensor).allclose(unmerged, { rtol: 1e-5, atol: 1e-6 })).toBe(true);
  });

  test("Conv1D (fanInFanOut) merges transposed and unmerges exactly", () => {
    manualSeed(12);
    const conv = new nn.Conv1D(5, 7);
    const model = new nn.Sequential(conv);
    const lm = lora.injectAdapter(model, { r: 2, loraAlpha: 2, targetModules: ["0"] });
    const layer = model.at(0) as lora.LoraLinear;
    init.normal_(layer.factors("default")[1]);
    const x = randn([3, 7]);
    const y = lm.forward(x) as Tensor;
    const W = conv.weight.clone();
    lm.merge();
    expect((lm.forward(x) as Tensor).allclose(y, { rtol: 1e-5, atol: 1e-6 })).toBe(true);
    lm.unmerge();
    expect(conv.weight.equal(W)).toBe(true);
  });

  test("mergeAndUnload with a layer whose only adapter is inactive: that layer comes back plain and unchanged", () => {
    manualSeed(19);
    const model = new TinyModel();
    const head = model.head.weight.clone();
    const lm = lora.injectAdapter(model, { r: 2, loraAlpha: 4, targetModules: ["fc1"] });
    lm.addAdapter("other", { r: 2, loraAlpha: 4, targetModules: ["head"] });
    randomizeFactors(lm);
    lm.setAdapter("default");
    const expected = lm.forward(ids()) as Tensor;
    const plain = lm.mergeAndUnload() as TinyModel;
    expect([plain.fc1, plain.head].map((m) => m instanceof nn.Linear)).toEqual([true, true]);
    expect(plain.head.weight.equal(head)).toBe(true);
    expect(plain.forward(ids()).allclose(expected, { rtol: 1e-5, atol: 1e-6 })).toBe(true);
  });

  test("mergeAndUnload returns plain layers with the deltas; unload returns plain layers without", () => {
    const a = adapted();
    const expected = a.lm.forward(ids());
    const plain = a.lm.mergeAndUnload() as TinyModel;
    expect(plain.fc1).toBeInstanceOf(nn.Linear);
    expect(plain.emb).toBeInstanceOf(nn.Embedding);
    expect(plain.forward(ids()).allclose(expected, { rtol: 1e-5, atol: 1e-6 })).toBe(true);

    manualSeed(11);
    const baseOnly = new TinyModel().forward(ids());
    const b = adapted();
    b.lm.merge();
    const unloaded = b.lm.unload() as TinyModel;
    expect(unloaded.head).toBeInstanceOf(nn.Linear);
    expect(unloaded.forward(ids()).equal(baseOnly)).toBe(true);
  });
});

describe("async merge", () => {
  test("mergeAsync/unmergeAsync give results identical to the sync versions", async () => {
    const s = adapted("float32", 13);
    const a = adapted("float32", 13);
    s.lm.merge();
    await a.lm.mergeAsync();
    expect(changedParameters(snapshot(s.model), snapshot(a.model))).toEqual([]);
    const before = snapshot(adapted("float32", 13).model);
    await a.lm.unmergeAsync();
    expect(changedParameters(before, snapshot(a.model))).toEqual([]);
  });

  test("the event loop keeps turning during a large merge, and conflicting calls fail clearly", async () => {
    manualSeed(14);
    const model = new nn.Sequential(new nn.Linear(2048, 2048));
    const lm = lora.injectAdapter(model, { r: 16, loraAlpha: 16, targetModules: ["0"] });
    init.normal_((model.at(0) as lora.LoraLinear).factors("default")[1]);
    let ticks = 0;
    const timer = setInterval(() => ticks++, 0);
    const pending = lm.mergeAsync({ safe: true });
    expect(() => lm.forward(randn([1, 2048]))).toThrow(StateError);
    expect(() => lm.unmerge()).toThrow(/async merge is in flight/);
    await pending;
    clearInterval(timer);
    expect(ticks).toBeGreaterThan(0);
    expect((model.at(0) as lora.LoraLinear).merged).toBe(true);
    const tsum = await lm.mergeAndUnloadAsync();
    expect((tsum as nn.Sequential).at(0)).toBeInstanceOf(nn.Linear);
  });

  test("an optimizer step taken while an async merge runs does not leak into the merged weight", async () => {
    manualSeed(16);
    const model = new nn.Sequential(new nn.Linear(1024, 1024));
    const lm = lora.injectAdapter(model, { r: 8, loraAlpha: 16, targetModules: ["0"] });
    const layer = model.at(0) as lora.LoraLinear;
    const [A, B] = layer.factors("default");
    init.normal_(B);
    // The weight this merge must produce: W + s·BA with the factors as they were at the call.
    const expected = layer.base_layer.weight.add(B.matmul(A).mul(2));
    const opt = new optim.SGD(lm.trainableParameters(), { lr: 0.5 });
    for (const p of lm.trainableParameters()) p.mul(randn(p.shape)).sum().backward();
    const before = snapshot(model);
    const pending = lm.mergeAsync();
    opt.step();
    await pending;
    expect(changedParameters(before, snapshot(model)).sort()).toEqual(["0.base_layer.weight", "0.lora_A.default.weight", "0.lora_B.default.weight"]);
    expect(layer.base_layer.weight.allclose(expected, { rtol: 1e-5, atol: 1e-5 })).toBe(true);
    // Unmerge still restores the pristine weight bit for bit.
    await lm.unmergeAsync();
    expect(layer.base_layer.weight.toBytes().equals(before.get("0.base_layer.weight")!)).toBe(true);
  });

  test("an async unmerge in flight makes conflicting calls fail with a StateError naming them, then restores the base", async () => {
    const { model, lm } = adapted("float32", 18);
    const pristine = snapshot(model);
    lm.merge();
    const pending = lm.unmergeAsync();
    expect(() => lm.forward(ids())).toThrow(/^forward: an async unmerge is in flight on this layer; await it first$/);
    expect(() => lm.merge()).toThrow(/^merge: an async unmerge is in flight/);
    await pending;
    expect(changedParameters(pristine, snapshot(model))).toEqual([]);
    expect(() => lm.forward(ids())).not.toThrow();
  });

  test("a layer called directly while its async merge runs refuses each operation by name", async () => {
    const { lm } = adapted("float32", 21);
    const fc1 = Object.fromEntries(lm.loraLayers()).fc1 as lora.LoraLinear;
    const pending = fc1.mergeAsync();
    const refused = (op: string) => new RegExp(`^${op}: an async merge is in flight on this layer; await it first$`);
    expect(() => fc1.merge()).toThrow(refused("merge"));
    await expect(fc1.mergeAsync()).rejects.toThrow(refused("merge"));
    expect(() => fc1.unmerge()).toThrow(refused("unmerge"));
    await expect(fc1.unmergeAsync()).rejects.toThrow(refused("unmerge"));
    expect(() => fc1.commitMerge()).toThrow(refused("mergeAndUnload"));
    expect(() => fc1.enterDisabledScope()).toThrow(refused("withAdaptersDisabled"));
    expect(() => fc1.to({ dtype: "float64" })).toThrow(refused("to"));
    await pending;
    expect(fc1.mergedAdapters).toEqual(["default"]);
  });

  test("unmergeAsync with nothing merged resolves and changes nothing", async () => {
    const { model, lm } = adapted("float32", 20);
    const before = snapshot(model);
    await lm.unmergeAsync();
    expect(changedParameters(before, snapshot(model))).toEqual([]);
  });

  test("a failing async merge rejects and leaves the weights untouched", async () => {
    const { model, lm } = adapted("float32", 15);
    init.constant_((model.fc1 as unknown as lora.LoraLinear).factors("default")[1], Infinity);
    const before = snapshot(model);
    await expect(lm.mergeAsync({ safe: true })).rejects.toThrow(/NaN or Inf/);
    expect(changedParameters(before, snapshot(model))).toEqual([]);
  });
});
