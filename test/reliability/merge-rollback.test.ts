/**
 * No data loss around merges: a merge that fails half-way (NaN/Inf refused by a safe merge, a
 * disposed factor) leaves every layer untouched — bit for bit — and the model consistent;
 * unmerge after a failed merge restores the exact base weights; a retried merge is correct.
 * Sync and async paths, float32 and half types.
 */
import { Dtype, Tensor, init, lora, manualSeed, nn, noGrad, tensor } from "../../lib";
import { changedParameters } from "../helpers/models";

/** Every live parameter's bytes by name (a disposed one is left out rather than failing the read). */
function snapshot(module: nn.Module): Map<string, Buffer> {
  return new Map(
    module
      .namedParameters()
      .filter(([, p]) => !p.isDisposed)
      .map(([n, p]) => [n, p.toBytes()]),
  );
}

const LAYERS = 5;
const FAILING = 2; // the third of five layers

class Stack extends nn.Module {
  layers: nn.ModuleList<nn.Linear>;
  constructor(dtype: Dtype) {
    super();
    this.layers = new nn.ModuleList(Array.from({ length: LAYERS }, () => new nn.Linear(6, 6, { dtype })));
  }
  override forward(x: Tensor): Tensor {
    let h = x;
    for (const l of this.layers) h = l.forward(h);
    return h;
  }
}

/** A 5-layer model with adapter "a" (and optionally "b") whose B factors are random, so merges move the weights. */
function build(dtype: Dtype = "float32", adapters: string[] = ["a"]): lora.LoraModel {
  manualSeed(11);
  const model = new Stack(dtype);
  const m = lora.injectAdapter(model, { targetModules: "layers\\.[0-9]", r: 2, loraAlpha: 4 }, adapters[0]);
  for (const name of adapters.slice(1)) m.addAdapter(name, { targetModules: "layers\\.[0-9]", r: 2, loraAlpha: 2 });
  for (const [, layer] of m.loraLayers()) for (const name of adapters) noGrad(() => init.normal_(layer.factors(name)[1], 0, 0.5));
  return m;
}

function layer(m: lora.LoraModel, i: number): lora.LoraLinear {
  return m.loraLayers()[i][1] as lora.LoraLinear;
}

/** Base weights in float64 as plain arrays: W (out, in). */
function weights(m: lora.LoraModel): number[][] {
  return m.loraLayers().map(([, l]) => Array.from(l.base_layer.weight.to({ dtype: "float64" }).toArray() as Float64Array));
}

/** W + s·B·A computed with plain JS loops, independent of the native merge. */
function expectedMerged(w: number[], A: Tensor, B: Tensor, s: number): number[] {
  const [r, inF] = A.shape;
  const out = B.shape[0];
  const a = A.to({ dtype: "float64" }).toArray() as Float64Array;
  const b = B.to({ dtype: "float64" }).toArray() as Float64Array;
  const res = w.slice();
  for (let o = 0; o < out; o++)
    for (let i = 0; i < inF; i++) {
      let acc = 0;
      for (let k = 0; k < r; k++) acc += b[o * r + k] * a[k * inF + i];
      res[o * inF + i] += s * acc;
    }
  return res;
}

function expectAllClose(actual: number[], expected: number[], tol: number): void {
  const worst = actual.reduce((m, v, i) => Math.max(m, Math.abs(v - expected[i])), 0);
  expect(worst).toBeLessThanOrEqual(tol);
}

const poison = (m: lora.LoraModel, value = NaN, name = "a"): void => {
  noGrad(() => init.constant_(layer(m, FAILING).factors(name)[1], value));
};

describe.each([
  ["sync", (m: lora.LoraModel, o: lora.MergeOptions) => Promise.resolve().then(() => m.merge(o))],
  ["async", (m: lora.LoraModel, o: lora.MergeOptions) => m.mergeAsync(o)],
] as const)("%s merge", (_kind, merge) => {
  it("safe merge with NaN in layer 3 of 5 throws and leaves every layer untouched; a retry merges correctly; unmerge is bit-exact", async () => {
    const m = build();
    const x = tensor([[0.5, -1, 2, 0, 1, -0.25]]);
    const before = snapshot(m.model);
    poison(m);
    const poisoned = snapshot(m.model);
    await expect(merge(m, { safe: true })).rejects.toThrow(/merge refused: the merged weight would contain NaN or Inf/);
    expect(changedParameters(poisoned, snapshot(m.model))).toEqual([]);
    expect(m.loraLayers().map(([, l]) => l.mergedAdapters)).toEqual(Array(LAYERS).fill([]));
    // Still usable and consistent: unmerge is a no-op.
    m.unmerge();
    expect(changedParameters(poisoned, snapshot(m.model))).toEqual([]);

    // Repair the factor, merge for real, compare with W + s·B·A from JS loops.
    noGrad(() => init.normal_(layer(m, FAILING).factors("a")[1], 0, 0.5));
    const base = weights(m);
    const unmergedOut = m.forward(x) as Tensor;
    await merge(m, { safe: true });
    expect((m.forward(x) as Tensor).allclose(unmergedOut, { rtol: 1e-5, atol: 1e-5 })).toBe(true);
    const merged = weights(m);
    m.loraLayers().forEach(([, l], i) => {
      const [A, B] = l.factors("a");
      expectAllClose(merged[i], expectedMerged(base[i], A, B, l.settings("a")!.scale), 1e-5);
      expect(l.mergedAdapters).toEqual(["a"]);
    });
    m.unmerge();
    const after = snapshot(m.model);
    const baseNames = [...before.keys()].filter((n) => n.includes("base_layer"));
    for (const n of baseNames) expect([n, after.get(n)!.equals(before.get(n)!)]).toEqual([n, true]);
    expect((m.forward(x) as Tensor).equal(unmergedOut)).toBe(true);
  });

  it("with adapter a merged, a failing merge of b keeps exactly the merged-a weights; unmerge gives the pristine base", async () => {
    const m = build("float32", ["a", "b"]);
    const pristine = snapshot(m.model);
    await merge(m, { adapterNames: ["a"] });
    const mergedA = snapshot(m.model);
    poison(m, Infinity, "b");
    const poisoned = snapshot(m.model);
    await expect(merge(m, { adapterNames: ["b"], safe: true })).rejects.toThrow(/merge refused/);
    expect(changedParameters(poisoned, snapshot(m.model))).toEqual([]);
    expect(m.loraLayers().map(([, l]) => l.mergedAdapters)).toEqual(Array(LAYERS).fill(["a"]));
    // The merged-a weights are the same bits as before the failed call.
    const baseNames = [...pristine.keys()].filter((n) => n.includes("base_layer"));
    for (const n of baseNames) expect(snapshot(m.model).get(n)!.equals(mergedA.get(n)!)).toBe(true);
    m.unmerge();
    for (const n of baseNames) expect(snapshot(m.model).get(n)!.equals(pristine.get(n)!)).toBe(true);
  });

  it("a disposed factor in layer 3 fails the merge with a clear error and rolls back layers 1-2", async () => {
    const m = build();
    const before = snapshot(m.model);
    const A = layer(m, FAILING).factors("a")[0];
    const keep = A.clone();
    A.dispose();
    await expect(merge(m, {})).rejects.toThrow(/^adapter "a": lora_A: the Tensor was disposed/);
    for (const [name, bytes] of before) {
      if (name === "layers.2.lora_A.a.weight") continue;
      expect([name, snapshot(m.model).get(name)?.equals(bytes)]).toEqual([name, true]);
    }
    expect(m.loraLayers().every(([, l]) => !l.merged)).toBe(true);
    expect(keep.shape).toEqual([2, 6]);
  });

  it.each(["float16", "bfloat16"] as const)(
    "%s: overflow to Inf is refused, the base stays bit-exact, unmerge after a good merge is bit-exact",
    async (dtype) => {
      const m = build(dtype);
      const pristine = snapshot(m.model);
      // 1e4·1e4·s overflows float16 (max 65504); for bfloat16, 1e30·1e30 overflows as well.
      const big = dtype === "float16" ? 1e4 : 1e30;
      noGrad(() => {
        init.constant_(layer(m, FAILING).factors("a")[0], big);
        init.constant_(layer(m, FAILING).factors("a")[1], big);
      });
      const poisoned = snapshot(m.model);
      await expect(merge(m, { safe: true })).rejects.toThrow(/merge refused/);
      expect(changedParameters(poisoned, snapshot(m.model))).toEqual([]);
      noGrad(() => init.normal_(layer(m, FAILING).factors("a")[0], 0, 0.1));
      await merge(m, { safe: true });
      expect(m.loraLayers().every(([, l]) => l.mergedAdapters.join() === "a")).toBe(true);
      m.unmerge();
      const after = snapshot(m.model);
      for (const [n, bytes] of pristine) if (n.includes("base_layer")) expect([n, after.get(n)!.equals(bytes)]).toEqual([n, true]);
    },
  );
});

it("an unsafe merge writes NaN, and unmerge still restores the exact base weights", async () => {
  const m = build();
  const pristine = snapshot(m.model);
  poison(m);
  m.merge();
  expect(layer(m, FAILING).base_layer.weight.allFinite()).toBe(false);
  expect(layer(m, 0).base_layer.weight.allFinite()).toBe(true);
  await m.unmergeAsync();
  const after = snapshot(m.model);
  for (const [n, bytes] of pristine) if (n.includes("base_layer")) expect([n, after.get(n)!.equals(bytes)]).toEqual([n, true]);
});

it("mergeAndUnload that fails leaves the LoRA model in place and unchanged", async () => {
  const m = build();
  poison(m);
  const poisoned = snapshot(m.model);
  expect(() => m.mergeAndUnload({ safe: true })).toThrow(/merge refused/);
  await expect(m.mergeAndUnloadAsync({ safe: true })).rejects.toThrow(/merge refused/);
  expect(m.loraLayers()).toHaveLength(LAYERS);
  expect(changedParameters(poisoned, snapshot(m.model))).toEqual([]);
});
