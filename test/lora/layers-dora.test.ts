/**
 * DoRA adapters next to plain ones on one LoRA Linear: which forward runs (disabled, DoRA
 * inactive, stacked), merges that mix both kinds against W ← (m/‖W + s·B·A‖) ⊙ (W + s·B·A) applied
 * in order and computed here in float64, bit-exact unmerges, safe merges refused half-way, and
 * what replacing or deleting a DoRA adapter leaves behind.
 */
import { StateError, Tensor, init, lora, noGrad, randn } from "../../lib";
import { messageOf, thrownBy } from "../helpers/errors";
import { maxAbsDiff } from "../helpers/stats";
import { INIT, PLAIN, mixedLayer as mixedDoraLayer } from "./support/mixed-dora";

const F64 = { dtype: "float64" } as const;

/** A Linear 5 → 4 with plain adapter "p" and DoRA adapter "d", every factor and magnitude random. */
const mixedLayer = () => mixedDoraLayer(5, 4, 21);

/** s·B·A of adapter `name`, in float64. */
function delta(layer: lora.LoraLinear, name: string): Tensor {
  const [A, B] = layer.factors(name).map((f) => f.detach().to(F64));
  return B.matmul(A).mul(layer.settings(name)!.scale);
}

/** One merge step on W (out, in), in float64: W + Δ for a plain adapter, (m/‖W + Δ‖_row) ⊙ (W + Δ) for DoRA. */
function mergeStep(layer: lora.LoraLinear, w: Tensor, name: string): Tensor {
  const combined = w.add(delta(layer, name));
  const m = layer.magnitude(name);
  if (!m) return combined;
  const norm = combined.pow(2).sum(1).sqrt();
  return combined.mul(m.detach().to(F64).div(norm).reshape([-1, 1]));
}

/** y = x Wᵀ + b in float64. */
function linear(x: Tensor, w: Tensor, b: Tensor): Tensor {
  return x.to(F64).matmul(w.t()).add(b.detach().to(F64));
}

describe("which forward runs", () => {
  test("a DoRA adapter on a disabled layer: the base output", () => {
    const layer = mixedLayer();
    layer.setActiveAdapters(["d"]);
    layer.setDisabled(true);
    const x = randn([3, 5]);
    expect(maxAbsDiff(layer.forward(x), linear(x, layer.base_layer.weight.detach().to(F64), layer.base_layer.bias!))).toBeLessThan(1e-6);
  });

  test("a DoRA adapter held but not active: the plain adapter's formula", () => {
    const layer = mixedLayer();
    layer.setActiveAdapters(["p"]);
    const x = randn([3, 5]);
    const w = layer.base_layer.weight.detach().to(F64).add(delta(layer, "p"));
    expect(maxAbsDiff(layer.forward(x), linear(x, w, layer.base_layer.bias!))).toBeLessThan(1e-5);
  });

  test("the DoRA adapter alone: (m/‖W + s·B·A‖) ⊙ (W + s·B·A), and its magnitude is trained", () => {
    const layer = mixedLayer();
    layer.setActiveAdapters(["d"]);
    const m = layer.magnitude("d")!;
    expect(m.requiresGrad).toBe(true);
    const x = randn([3, 5]);
    const y = layer.forward(x);
    expect(maxAbsDiff(y, linear(x, mergeStep(layer, layer.base_layer.weight.detach().to(F64), "d"), layer.base_layer.bias!))).toBeLessThan(1e-5);
    y.sum().backward();
    expect(m.grad).not.toBeNull();
    expect(m.grad!.abs().sum().item()).toBeGreaterThan(0);
  });

  test("a DoRA adapter stacked with another is refused, naming all that are active", () => {
    const layer = mixedLayer();
    layer.setActiveAdapters(["d", "p"]);
    expect(messageOf(() => layer.forward(randn([1, 5])), StateError)).toBe(
      'forward: DoRA adapter "d" must be the only active adapter of its layer, but "d", "p" are active; setAdapter("d") or merge the others',
    );
  });
});

describe("merges that mix plain and DoRA adapters", () => {
  test("one call merging p then d: each in turn on what is merged before it; unmerge gives the base back bit for bit", () => {
    const layer = mixedLayer();
    const pristine = layer.base_layer.weight.detach().clone();
    expect(layer.merge({ adapterNames: ["p", "d"] })).toEqual(["p", "d"]);
    const expected = mergeStep(layer, mergeStep(layer, pristine.to(F64), "p"), "d");
    expect(maxAbsDiff(layer.base_layer.weight, expected)).toBeLessThan(1e-5);
    expect(layer.mergedAdapters).toEqual(["p", "d"]);
    layer.unmerge();
    expect(layer.base_layer.weight.equal(pristine)).toBe(true);
    expect(layer.merged).toBe(false);
  });

  test("d then p in one call: the other order, another weight", () => {
    const layer = mixedLayer();
    const pristine = layer.base_layer.weight.detach().clone();
    layer.merge({ adapterNames: ["d", "p"] });
    const expected = mergeStep(layer, mergeStep(layer, pristine.to(F64), "d"), "p");
    expect(maxAbsDiff(layer.base_layer.weight, expected)).toBeLessThan(1e-5);
    layer.unmerge();
    expect(layer.base_layer.weight.equal(pristine)).toBe(true);
  });

  test("p merged first, d in a second call: unmerge restores the weight of before the first merge", () => {
    const layer = mixedLayer();
    const pristine = layer.base_layer.weight.detach().clone();
    layer.merge({ adapterNames: ["p"] });
    layer.merge({ adapterNames: ["d"] });
    expect(maxAbsDiff(layer.base_layer.weight, mergeStep(layer, mergeStep(layer, pristine.to(F64), "p"), "d"))).toBeLessThan(1e-5);
    layer.unmerge();
    expect(layer.base_layer.weight.equal(pristine)).toBe(true);
  });

  test("a safe merge refused at the DoRA adapter puts back the weight of before the call, bit for bit", () => {
    const layer = mixedLayer();
    noGrad(() => init.constant_(layer.magnitude("d")!, NaN));
    const pristine = layer.base_layer.weight.detach().clone();
    expect(thrownBy(() => layer.merge({ adapterNames: ["p", "d"], safe: true })).message).toBe(
      "merge refused: the merged weight would contain NaN or Inf values; the base weight is unchanged",
    );
    expect(layer.base_layer.weight.equal(pristine)).toBe(true);
    expect(layer.mergedAdapters).toEqual([]);
    // Nothing is held as merged: a later merge of p alone is exact and unmerges to the base.
    layer.merge({ adapterNames: ["p"] });
    layer.unmerge();
    expect(layer.base_layer.weight.equal(pristine)).toBe(true);
  });

  test("a safe merge refused at its first adapter, on a layer with nothing merged: the native refusal as is, nothing written", () => {
    const layer = mixedLayer();
    noGrad(() => init.constant_(layer.magnitude("d")!, NaN));
    const pristine = layer.base_layer.weight.detach().clone();
    const err = thrownBy(() => layer.merge({ adapterNames: ["d"], safe: true }));
    expect(err).not.toBeInstanceOf(StateError);
    expect(err.message).toBe("merge refused: the merged weight would contain NaN or Inf values; the base weight is unchanged");
    expect(layer.base_layer.weight.equal(pristine)).toBe(true);
    expect(layer.mergedAdapters).toEqual([]);
  });

  test("refused at the DoRA adapter on a layer already merged: a StateError that says so; unmerge still restores the base", () => {
    const layer = mixedLayer();
    const pristine = layer.base_layer.weight.detach().clone();
    layer.merge({ adapterNames: ["p"] });
    const mergedP = layer.base_layer.weight.detach().clone();
    noGrad(() => init.constant_(layer.magnitude("d")!, NaN));
    expect(messageOf(() => layer.merge({ adapterNames: ["d"], safe: true }), StateError)).toBe(
      "merge: failed half-way on a layer that already had merged adapters (merge refused: the merged weight would contain NaN or Inf values; the base weight is unchanged); unmerge() to restore the base weight",
    );
    expect(layer.mergedAdapters).toEqual(["p"]);
    expect(layer.base_layer.weight.equal(mergedP)).toBe(true);
    layer.unmerge();
    expect(layer.base_layer.weight.equal(pristine)).toBe(true);
  });
});

describe("replacing and deleting a DoRA adapter", () => {
  test("replaced by a plain adapter of the same name: the magnitude goes, forward is plain LoRA", () => {
    const layer = mixedLayer();
    layer.addAdapter("d", PLAIN, INIT);
    noGrad(() => init.normal_(layer.factors("d")[1]));
    expect(layer.magnitude("d")).toBeNull();
    expect(Object.keys(layer.stateDict()).filter((k) => k.startsWith("lora_magnitude_vector"))).toEqual([]);
    layer.setActiveAdapters(["d", "p"]); // two plain adapters stack
    const x = randn([2, 5]);
    const w = layer.base_layer.weight.detach().to(F64).add(delta(layer, "d")).add(delta(layer, "p"));
    expect(maxAbsDiff(layer.forward(x), linear(x, w, layer.base_layer.bias!))).toBeLessThan(1e-5);
  });

  test("deleted: its magnitude leaves the stateDict and the parameters", () => {
    const layer = mixedLayer();
    layer.deleteAdapter("d");
    expect(layer.magnitude("d")).toBeNull();
    expect(Object.keys(layer.stateDict()).sort()).toEqual(["base_layer.bias", "base_layer.weight", "lora_A.p.weight", "lora_B.p.weight"]);
  });
});
