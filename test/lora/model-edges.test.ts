/**
 * LoraModel's bookkeeping at its edges: arguments refused by name with nothing changed, the
 * active list after deletions, modes of new modules, the rank bound, what getters hand out,
 * the exact-unmerge backups freed by mergeAndUnload, and a failed merge on top of earlier
 * merges leaving the weights bit for bit as they were, in every dtype.
 */
import { ConfigError, Dtype, StateError, Tensor, init, lora, manualSeed, memoryStats, nn, noGrad, tensor } from "../../lib";
import { messageOf, thrownBy } from "../helpers/errors";
import { TinyModel, changedParameters, snapshot } from "../helpers/models";

/** A TinyModel (emb → fc1 → ReLU → head) with adapter "default" on emb and fc1, B random so the adapter moves the output. */
function injected(targets = ["emb", "fc1"]): lora.LoraModel<TinyModel> {
  manualSeed(5);
  const m = lora.injectAdapter(new TinyModel(), { targetModules: targets, r: 2, loraAlpha: 4 });
  randomize(m, "default");
  return m;
}

function randomize(m: lora.LoraModel, name: string): void {
  for (const [, l] of m.loraLayers()) if (l.adapterNames.includes(name)) noGrad(() => init.normal_(l.factors(name)[1], 0, 0.5));
}

/** The factor tensors of `name` over every layer. */
function factorsOf(m: lora.LoraModel, name: string): Tensor[] {
  return m.loraLayers().flatMap(([, l]) => (l.adapterNames.includes(name) ? l.factors(name) : []));
}

/** What the model says about its adapters, for "nothing changed" checks. */
function state(m: lora.LoraModel): unknown {
  return {
    names: m.adapterNames,
    active: m.activeAdapters,
    layers: m.loraLayers().map(([p, l]) => [p, l.adapterNames, l.activeAdapters, l.mergedAdapters]),
    trainable: m.trainableParameters().length,
  };
}

describe("getters hand out copies", () => {
  it("changing what activeAdapters and unmatchedTargets return changes nothing in the model", () => {
    manualSeed(5);
    const m = lora.injectAdapter(new TinyModel(), { targetModules: ["fc1", "q_proj"], r: 2 }, "default", { unmatchedTargets: "record" });
    m.activeAdapters.push("other");
    m.activeAdapters.length = 0;
    expect(m.activeAdapters).toEqual(["default"]);
    expect(m.activeAdapter).toBe("default");
    m.unmatchedTargets.default.push("k_proj");
    m.unmatchedTargets.default.length = 0;
    expect(m.unmatchedTargets).toEqual({ default: ["q_proj"] });
  });
});

describe("addAdapter", () => {
  it("refuses a new adapter while a targeted layer is merged, naming the layer, and changes nothing", () => {
    const m = injected();
    m.merge();
    const before = snapshot(m.model);
    const was = state(m);
    expect(messageOf(() => m.addAdapter("b", { targetModules: ["emb", "fc1"], r: 2 }), StateError)).toBe(
      "addAdapter: emb has merged adapters; unmerge() first",
    );
    expect(messageOf(() => m.addAdapter("b", { targetModules: ["fc1"], r: 2 }), StateError)).toBe("addAdapter: fc1 has merged adapters; unmerge() first");
    expect(state(m)).toEqual(was);
    expect(changedParameters(before, snapshot(m.model))).toEqual([]);
    // A layer that is not merged takes the adapter.
    m.addAdapter("b", { targetModules: ["head"], r: 2 });
    expect(m.loraLayers().map(([p]) => p)).toEqual(["emb", "fc1", "head"]);
  });

  it("accepts a rank up to 16 × the weight's larger side (at least 1024) and refuses one more, with the bound in the message", () => {
    class Tall extends nn.Module {
      fc = new nn.Linear(2, 100); // weight [100, 2]: the bound is 16 · 100 = 1600
      small = new nn.Linear(4, 4); // weight [4, 4]: the bound is 1024
      override forward(x: Tensor): Tensor {
        return this.small.forward(x);
      }
    }
    const m = lora.injectAdapter(new Tall(), { targetModules: ["fc"], r: 1600 });
    expect(m.loraLayers()[0][1].factors("default")[0].shape).toEqual([1600, 2]);
    expect(messageOf(() => m.addAdapter("b", { targetModules: ["fc"], r: 1601 }), ConfigError)).toBe(
      "LoraConfig.r: rank 1601 for fc is far beyond its weight's size [100, 2] (at most 1600 is accepted)",
    );
    m.addAdapter("c", { targetModules: ["small"], r: 1024 });
    expect(m.loraLayers()[1][1].factors("c")[1].shape).toEqual([4, 1024]);
    expect(messageOf(() => m.addAdapter("d", { targetModules: ["small"], r: 1025 }), ConfigError)).toBe(
      "LoraConfig.r: rank 1025 for small is far beyond its weight's size [4, 4] (at most 1024 is accepted)",
    );
    expect(m.adapterNames).toEqual(["default", "c"]);
  });

  it("refuses PiSSA on an embedding before any layer changes, naming the layer", () => {
    class LinearFirst extends nn.Module {
      fc = new nn.Linear(4, 6);
      emb = new nn.Embedding(10, 4);
      override forward(ids: Tensor): Tensor {
        return this.fc.forward(this.emb.forward(ids));
      }
    }
    manualSeed(2);
    const model = new LinearFirst();
    const before = snapshot(model);
    expect(messageOf(() => lora.injectAdapter(model, { targetModules: ["fc", "emb"], r: 2, initLoraWeights: "pissa" }), ConfigError)).toBe(
      'LoraConfig.initLoraWeights: "pissa" applies to Linear and Conv1D layers only (PEFT defines it for no Embedding) (layer emb); ' +
        "exclude the embedding from targetModules or use another init",
    );
    // PiSSA would have rewritten fc's weight: it is untouched, and still a plain Linear.
    expect(model.fc).toBeInstanceOf(nn.Linear);
    expect(changedParameters(before, snapshot(model))).toEqual([]);
  });

  it("new LoRA modules take the mode of the layer they join; a wrapped base layer keeps its own", () => {
    manualSeed(3);
    const model = new TinyModel();
    model.train();
    model.fc1.eval();
    const m = lora.injectAdapter(model, { targetModules: ["fc1", "head"], r: 2, loraDropout: 0.5 });
    const fc1 = m.model.fc1 as unknown as lora.LoraLinear;
    // The LoRA layer joins a training model; the Linear it wraps stays in eval mode.
    expect(fc1.training).toBe(true);
    expect(fc1.base_layer.training).toBe(false);
    expect(m.model.head.training).toBe(true);

    // A LoRA layer put in eval mode on its own: an adapter added later is in eval mode too, so
    // its dropout (p = 0.5) is off and forward is exactly the LoRA formula, while the parent trains.
    fc1.eval();
    m.addAdapter("b", { targetModules: ["fc1"], r: 2, loraAlpha: 2, loraDropout: 0.5 });
    expect(m.model.training).toBe(true);
    expect(fc1.namedModules().every(([, mod]) => !mod.training)).toBe(true);
    randomize(m, "default");
    randomize(m, "b");
    m.setAdapter(["default", "b"]);
    const x = tensor([
      [0.5, -1, 2, 0, 1, -0.25, 0.75, 1.5],
      [1, 1, -1, 0.5, 0, 2, -2, 0.25],
    ]);
    const base = fc1.base_layer as nn.Linear;
    let expected = x.matmul(base.weight.t()).add(base.bias!);
    for (const n of ["default", "b"]) {
      const [A, B] = fc1.factors(n).map((f) => f.detach());
      expected = expected.add(x.matmul(A.t()).matmul(B.t()).mul(fc1.settings(n)!.scale));
    }
    for (let i = 0; i < 3; i++) expect((fc1.forward(x) as Tensor).allclose(expected, { rtol: 1e-5, atol: 1e-6 })).toBe(true);
  });
});

describe("setAdapter and setRequiresGrad", () => {
  it("setAdapter refuses an empty list and a non-list by name, and changes nothing", () => {
    const m = injected();
    const was = state(m);
    expect(messageOf(() => m.setAdapter([]), TypeError)).toBe("adapterName: expected a name or a non-empty list of names, got an array of length 0");
    expect(messageOf(() => m.setAdapter(42 as never), TypeError)).toBe("adapterName: expected a name or a non-empty list of names, got 42");
    expect(messageOf(() => m.setAdapter({ 0: "default", length: 1 } as never), TypeError)).toBe(
      "adapterName: expected a name or a non-empty list of names, got an object",
    );
    expect(state(m)).toEqual(was);
  });

  it("setRequiresGrad refuses a non-list by name; with no flag it makes the adapter train again", () => {
    const m = injected();
    expect(messageOf(() => m.setRequiresGrad(42 as never), TypeError)).toBe("adapterName: expected a name or a list of names, got 42");
    expect(messageOf(() => m.setRequiresGrad(null as never, false), TypeError)).toBe("adapterName: expected a name or a list of names, got null");
    expect(m.trainableParameters()).toHaveLength(4);
    m.setRequiresGrad("default", false);
    expect(m.trainableParameters()).toEqual([]);
    m.setRequiresGrad("default");
    const trainable = new Set(m.trainableParameters());
    expect(factorsOf(m, "default").every((t) => trainable.has(t))).toBe(true);
    expect(trainable.size).toBe(4);
  });
});

describe("deleteAdapter", () => {
  it("refuses a merged adapter, naming every layer it is merged into, and changes nothing", () => {
    const m = injected();
    m.merge();
    const before = snapshot(m.model);
    const was = state(m);
    expect(messageOf(() => m.deleteAdapter("default"), StateError)).toBe('deleteAdapter: "default" is merged into emb, fc1; unmerge() first');
    expect(state(m)).toEqual(was);
    expect(changedParameters(before, snapshot(m.model))).toEqual([]);
  });

  it("keeps the other active adapters, falls back to the first adapter when none is left active, and to none after the last", () => {
    const m = injected();
    m.addAdapter("b", { targetModules: ["emb", "fc1"], r: 2 });
    m.addAdapter("c", { targetModules: ["emb", "fc1"], r: 2 });
    m.setAdapter(["b", "c"]);
    const trainableSet = (): Set<Tensor> => new Set(m.trainableParameters());

    m.deleteAdapter("b");
    expect(m.activeAdapters).toEqual(["c"]);
    expect(m.loraLayers().map(([, l]) => l.activeAdapters)).toEqual([["c"], ["c"]]);
    expect([...trainableSet()].length).toBe(4);
    expect(factorsOf(m, "c").every((t) => trainableSet().has(t))).toBe(true);

    m.deleteAdapter("c");
    expect(m.activeAdapters).toEqual(["default"]);
    expect(m.loraLayers().map(([, l]) => l.activeAdapters)).toEqual([["default"], ["default"]]);
    expect(factorsOf(m, "default").every((t) => trainableSet().has(t))).toBe(true);

    // Deleting an inactive adapter leaves the active one alone.
    m.addAdapter("d", { targetModules: ["fc1"], r: 2 });
    m.deleteAdapter("d");
    expect(m.activeAdapters).toEqual(["default"]);

    m.deleteAdapter("default");
    expect(m.adapterNames).toEqual([]);
    expect(m.activeAdapters).toEqual([]);
    expect(m.trainableParameters()).toEqual([]);
  });
});

describe("operations named in refusals", () => {
  it("withAdaptersDisabled during an async merge names itself", async () => {
    const m = injected();
    const pending = m.mergeAsync();
    expect(messageOf(() => m.withAdaptersDisabled(() => 0), StateError)).toBe(
      "withAdaptersDisabled: an async merge is in flight on this layer; await it first",
    );
    await pending;
    expect(m.loraLayers().map(([, l]) => l.mergedAdapters)).toEqual([["default"], ["default"]]);
  });

  it("unmergeAsync inside withAdaptersDisabled names unmerge", async () => {
    const m = injected();
    m.merge();
    const before = snapshot(m.model);
    await expect(m.withAdaptersDisabled(() => m.unmergeAsync())).rejects.toThrow(
      new StateError(
        "unmerge: not allowed inside withAdaptersDisabled(fn), which restores the adapter state of before the call when fn ends; call it after fn returns",
      ),
    );
    expect(m.loraLayers().map(([, l]) => l.mergedAdapters)).toEqual([["default"], ["default"]]);
    expect(changedParameters(before, snapshot(m.model))).toEqual([]);
  });

  it("merge and injectAdapter name the options argument they refuse", () => {
    const m = injected();
    expect(messageOf(() => m.merge(42 as never), TypeError)).toBe("options: expected an options object, got 42");
    expect(messageOf(() => lora.injectAdapter(new TinyModel(), { targetModules: ["fc1"] }, "default", [] as never), TypeError)).toBe(
      "options: expected an options object, got an array of length 0",
    );
    expect(m.loraLayers().every(([, l]) => !l.merged)).toBe(true);
  });
});

describe("injectAdapter on a model that already has adapters", () => {
  it("lists the adapters and the layers holding them, or the model itself", () => {
    const m = injected();
    m.addAdapter("b", { targetModules: ["fc1"], r: 2 });
    const tail =
      "a second injection would replace them. Add another adapter with addAdapter(name, config) on the LoraModel that injectAdapter returned " +
      "(or loadAdapter(thatLoraModel, dir) for a saved one)";
    expect(messageOf(() => lora.injectAdapter(m.model, { targetModules: ["head"] }), StateError)).toBe(
      `injectAdapter: the model already has LoRA adapters ("default", "b" in emb, fc1); ${tail}`,
    );
    const fc1 = m.model.fc1 as unknown as lora.LoraLinear;
    expect(messageOf(() => lora.injectAdapter(fc1, { targetModules: ["base_layer"] }), StateError)).toBe(
      `injectAdapter: the model already has LoRA adapters ("default", "b" in the model itself); ${tail}`,
    );
    expect(m.loraLayers().map(([p]) => p)).toEqual(["emb", "fc1"]);
  });
});

describe("unload and mergeAndUnload", () => {
  it("unload leaves no active adapter behind", () => {
    const m = injected();
    m.unload();
    expect(m.activeAdapters).toEqual([]);
    expect(m.activeAdapter).toBeUndefined();
    expect(m.adapterNames).toEqual([]);
  });

  it.each(["sync", "async"] as const)(
    "%s mergeAndUnload frees the exact-unmerge backups at once and leaves the old layers with nothing merged",
    async (mode) => {
      const m = injected(["emb", "fc1", "head"]);
      const layers = m.loraLayers().map(([, l]) => l);
      const pristine = layers.map((l) => l.base_layer.weight.detach().clone());
      m.merge();
      // Each merged layer holds one backup of its pristine weight; mergeAndUnload disposes them at
      // once (a collection in between can only free more, never fewer).
      const merged3 = memoryStats().liveTensors;
      const plain = mode === "sync" ? m.mergeAndUnload() : await m.mergeAndUnloadAsync();
      expect(merged3 - memoryStats().liveTensors).toBeGreaterThanOrEqual(3);
      expect(layers.map((l) => l.mergedAdapters)).toEqual([[], [], []]);
      // The plain model keeps W + ΔW: the old layer's unmerge has nothing to put back.
      const merged = [plain.emb.weight, plain.fc1.weight, plain.head.weight].map((w) => w.toBytes().toString("hex"));
      for (const l of layers) l.unmerge();
      expect([plain.emb.weight, plain.fc1.weight, plain.head.weight].map((w) => w.toBytes().toString("hex"))).toEqual(merged);
      expect(merged[1]).not.toEqual(pristine[1].toBytes().toString("hex"));
    },
  );
});

describe("the record of merge calls", () => {
  it("lists the adapters each merge call merged, oldest first, as copies; unmerge clears it", () => {
    const m = injected();
    m.addAdapter("b", { targetModules: ["emb", "fc1"], r: 2 });
    const fc1 = m.loraLayers()[1][1];
    const first = fc1.merge({ adapterNames: ["default"] });
    // "default" is merged already: the second call merges "b" only.
    expect(fc1.merge({ adapterNames: ["b", "default"] })).toEqual(["b"]);
    expect(fc1.mergeCalls).toEqual([["default"], ["b"]]);
    first.push("changed by the caller");
    fc1.mergeCalls[1].push("changed by the caller");
    expect(fc1.mergeCalls).toEqual([["default"], ["b"]]);
    fc1.unmerge();
    expect(fc1.mergeCalls).toEqual([]);
  });
});

class Stack extends nn.Module {
  layers: nn.ModuleList<nn.Linear>;
  constructor(dtype: Dtype) {
    super();
    this.layers = new nn.ModuleList(Array.from({ length: 3 }, () => new nn.Linear(6, 6, { dtype })));
  }
  override forward(x: Tensor): Tensor {
    let h = x;
    for (const l of this.layers) h = l.forward(h);
    return h;
  }
}

describe.each(["float16", "bfloat16", "float32", "float64"] as const)("%s: a failed merge on top of earlier merges", (dtype) => {
  /** Adapters a, b, c on three layers, B random; c's B on the last layer is Inf, so a safe merge of c fails there. */
  function build(): lora.LoraModel<Stack> {
    manualSeed(3);
    const m = lora.injectAdapter(new Stack(dtype), { targetModules: "layers\\.[0-9]", r: 2, loraAlpha: 4 }, "a");
    for (const n of ["b", "c"]) m.addAdapter(n, { targetModules: "layers\\.[0-9]", r: 2, loraAlpha: 4 });
    for (const n of ["a", "b", "c"]) randomize(m, n);
    noGrad(() => init.constant_(m.loraLayers()[2][1].factors("c")[1], Infinity));
    return m;
  }
  const bytes = (m: lora.LoraModel): string[] => m.loraLayers().map(([, l]) => l.base_layer.weight.toBytes().toString("hex"));

  it.each([
    ["merged in two calls", [["a"], ["b"]]],
    ["merged in one call", [["a", "b"]]],
    ["merged in two calls, the second safe", [["a"], ["b", "safe"]]],
  ])("with a and b %s, the weights stay bit for bit; unmerge gives the pristine weights", async (_how, calls) => {
    for (const mode of ["sync", "async"] as const) {
      const m = build();
      const pristine = bytes(m);
      for (const call of calls) {
        const safe = call.includes("safe");
        m.merge({ adapterNames: call.filter((n) => n !== "safe"), safe });
      }
      const mergedBefore = bytes(m);
      const options = { adapterNames: ["c"], safe: true };
      if (mode === "sync") expect(() => m.merge(options)).toThrow(/merge refused/);
      else await expect(m.mergeAsync(options)).rejects.toThrow(/merge refused/);
      expect(bytes(m)).toEqual(mergedBefore);
      expect(m.loraLayers().map(([, l]) => l.mergedAdapters)).toEqual(Array(3).fill(["a", "b"]));
      m.unmerge();
      expect(bytes(m)).toEqual(pristine);
    }
  });

  it("with a merged and b active, the rollback re-merges a, not the active adapter", () => {
    const m = build();
    m.merge({ adapterNames: ["a"] });
    const mergedA = bytes(m);
    m.setAdapter("b");
    expect(() => m.merge({ adapterNames: ["c"], safe: true })).toThrow(/merge refused/);
    expect(m.loraLayers().map(([, l]) => l.mergedAdapters)).toEqual(Array(3).fill(["a"]));
    expect(bytes(m)).toEqual(mergedA);
  });
});

describe("withAdaptersDisabled when a layer fails to enter or to leave", () => {
  /** emb and fc1 merged; returns the merged weights' bytes. */
  function mergedModel(): { m: lora.LoraModel<TinyModel>; merged: string[] } {
    const m = injected();
    m.merge();
    return { m, merged: m.loraLayers().map(([, l]) => l.base_layer.weight.toBytes().toString("hex")) };
  }

  it("a layer that cannot leave (its weight disposed inside fn) does not keep the others from leaving, and its error is thrown", () => {
    const { m, merged } = mergedModel();
    const [emb, fc1] = m.loraLayers().map(([, l]) => l);
    let ran = false;
    const err = thrownBy(() =>
      m.withAdaptersDisabled(() => {
        ran = true;
        emb.base_layer.weight.dispose();
      }),
    );
    expect(ran).toBe(true);
    expect(err.message).toMatch(/disposed/);
    // fc1 left its scope: merged again with the same bits, adapters on, and open to changes.
    expect(fc1.disabled).toBe(false);
    expect(fc1.mergedAdapters).toEqual(["default"]);
    expect(fc1.base_layer.weight.toBytes().toString("hex")).toBe(merged[1]);
    fc1.unmerge();
    expect(fc1.merged).toBe(false);
  });

  it("a layer that cannot enter (its weight disposed before) leaves the layers already entered as they were, and fn does not run", () => {
    const { m, merged } = mergedModel();
    const [emb, fc1] = m.loraLayers().map(([, l]) => l);
    fc1.base_layer.weight.dispose();
    let ran = false;
    const err = thrownBy(() => m.withAdaptersDisabled(() => (ran = true)));
    expect(err.message).toMatch(/disposed/);
    expect(ran).toBe(false);
    expect(emb.disabled).toBe(false);
    expect(emb.mergedAdapters).toEqual(["default"]);
    expect(emb.base_layer.weight.toBytes().toString("hex")).toBe(merged[0]);
    emb.unmerge();
    expect(emb.merged).toBe(false);
  });
});
