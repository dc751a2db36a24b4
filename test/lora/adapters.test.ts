import { ConfigError, StateError, Tensor, init, lora, manualSeed, nn, randn, tensor } from "../../lib";
import { TinyModel, snapshot, changedParameters } from "../helpers/models";

class Block extends nn.Module {
  q = new nn.Linear(4, 4);
  v = new nn.Linear(4, 4);
  out = new nn.Linear(4, 4);
  override forward(x: Tensor): Tensor {
    return this.out.forward(this.q.forward(x).add(this.v.forward(x)));
  }
}
class Stack extends nn.Module {
  layers = new nn.ModuleList([new Block(), new Block()]);
  lm_head = new nn.Linear(4, 3);
  override forward(x: Tensor): Tensor {
    let h = x;
    for (const b of this.layers) h = b.forward(h);
    return this.lm_head.forward(h);
  }
}
const adaptedPaths = (lm: lora.LoraModel) => lm.loraLayers().map(([p]) => p);

describe("target selection", () => {
  test("a list matches exact names and dotted suffixes", () => {
    const lm = lora.injectAdapter(new Stack(), { targetModules: ["q", "layers.1.out"] });
    expect(adaptedPaths(lm)).toEqual(["layers.0.q", "layers.1.q", "layers.1.out"]);
  });
  test("a string is a regex that must match the whole name", () => {
    const lm = lora.injectAdapter(new Stack(), { targetModules: String.raw`layers\.\d\.(q|v)` });
    expect(adaptedPaths(lm)).toEqual(["layers.0.q", "layers.0.v", "layers.1.q", "layers.1.v"]);
    expect(() => lora.injectAdapter(new Stack(), { targetModules: "q" })).toThrow(ConfigError);
  });
  test("excludeModules and all-linear (which leaves lm_head alone)", () => {
    const lm = lora.injectAdapter(new Stack(), { targetModules: "all-linear", excludeModules: ["out"] });
    expect(adaptedPaths(lm)).toEqual(["layers.0.q", "layers.0.v", "layers.1.q", "layers.1.v"]);
  });
  test("a target matching nothing names the modules that exist", () => {
    expect(() => lora.injectAdapter(new Stack(), { targetModules: ["k_proj"] })).toThrow(/k_proj.*layers\.0\.q, layers\.0\.v/);
  });
  test("rank and alpha patterns override per module", () => {
    const lm = lora.injectAdapter(new Stack(), {
      r: 2,
      loraAlpha: 4,
      targetModules: ["q", "v"],
      rankPattern: { "layers.1.q": 3 },
      alphaPattern: { v: 9 },
    });
    const layer = (path: string) => lm.loraLayers().find(([p]) => p === path)![1];
    expect(layer("layers.0.q").settings("default")).toMatchObject({ r: 2, alpha: 4, scale: 2 });
    expect(layer("layers.1.q").settings("default")).toMatchObject({ r: 3, alpha: 4 });
    expect(layer("layers.1.q").factors("default")[0].shape).toEqual([3, 4]);
    expect(layer("layers.0.v").settings("default")).toMatchObject({ r: 2, alpha: 9, scale: 4.5 });
  });
});

describe("config validation names the field", () => {
  const bad: [string, Partial<lora.LoraConfig>, RegExp][] = [
    ["r < 1", { r: 0 }, /LoraConfig\.r: expected an integer >= 1, got 0/],
    ["r not an integer", { r: 2.5 }, /LoraConfig\.r/],
    ["alpha <= 0", { loraAlpha: 0 }, /LoraConfig\.loraAlpha/],
    ["alpha NaN", { loraAlpha: NaN }, /LoraConfig\.loraAlpha/],
    ["dropout 1", { loraDropout: 1 }, /LoraConfig\.loraDropout: expected a number in \[0, 1\)/],
    ["bad init", { initLoraWeights: "loftq" as never }, /LoraConfig\.initLoraWeights/],
    ["bad embedding init", { embeddingInit: "zeros" as never }, /LoraConfig\.embeddingInit/],
    ["unknown field", { lora_alpha: 3 } as never, /unknown field "lora_alpha"/],
    ["unsupported bias", { bias: "all" as never }, /LoraConfig\.bias/],
  ];
  test.each(bad)("%s", (_label, config, message) => {
    const model = new TinyModel();
    const before = snapshot(model);
    expect(() => lora.injectAdapter(model, { targetModules: ["fc1"], ...config })).toThrow(message);
    expect(model.fc1).toBeInstanceOf(nn.Linear);
    expect(changedParameters(before, snapshot(model))).toEqual([]);
  });
});

describe("several adapters", () => {
  function twoAdapters() {
    manualSeed(31);
    const model = new nn.Sequential(new nn.Linear(6, 5));
    const lm = lora.injectAdapter(model, { r: 2, loraAlpha: 2, targetModules: ["0"] });
    lm.addAdapter("other", { r: 3, loraAlpha: 6, targetModules: ["0"] });
    const layer = model.at(0) as lora.LoraLinear;
    init.normal_(layer.factors("default")[1]);
    init.normal_(layer.factors("other")[1]);
    return { model, lm, layer };
  }
  const lowRank = (layer: lora.LoraLinear, name: string, x: Tensor) => {
    const [A, B] = layer.factors(name);
    return x.matmul(A.t()).matmul(B.t()).mul(layer.settings(name)!.scale);
  };

  test("active adapters add up; setAdapter switches and makes only the active ones trainable", () => {
    const { lm, layer } = twoAdapters();
    const x = randn([4, 6]);
    const base = layer.base_layer.forward(x);
    expect(lm.activeAdapters).toEqual(["default"]);
    expect((lm.forward(x) as Tensor).allclose(base.add(lowRank(layer, "default", x)), { atol: 1e-5 })).toBe(true);
    lm.setAdapter("other");
    expect((lm.forward(x) as Tensor).allclose(base.add(lowRank(layer, "other", x)), { atol: 1e-5 })).toBe(true);
    expect(layer.factors("other")[0].requiresGrad).toBe(true);
    expect(layer.factors("default")[0].requiresGrad).toBe(false);
    lm.setAdapter(["default", "other"]);
    const both = base.add(lowRank(layer, "default", x)).add(lowRank(layer, "other", x));
    expect((lm.forward(x) as Tensor).allclose(both, { atol: 1e-5 })).toBe(true);
    // Merging both and unmerging restores the base exactly.
    const W = layer.base_layer.weight.clone();
    lm.merge();
    expect((lm.forward(x) as Tensor).allclose(both, { atol: 1e-5 })).toBe(true);
    lm.unmerge();
    expect(layer.base_layer.weight.equal(W)).toBe(true);
  });

  test("disabled adapters give the base output; withAdaptersDisabled restores them", () => {
    const { lm, layer } = twoAdapters();
    const x = randn([2, 6]);
    const base = layer.base_layer.forward(x);
    const adapted = lm.forward(x) as Tensor;
    const inside = lm.withAdaptersDisabled(() => lm.forward(x) as Tensor);
    expect(inside.equal(base)).toBe(true);
    expect((lm.forward(x) as Tensor).equal(adapted)).toBe(true);
    lm.merge();
    lm.disableAdapters(); // unmerges first, as PEFT does
    expect((lm.forward(x) as Tensor).equal(base)).toBe(true);
    lm.enableAdapters();
  });

  test("deleteAdapter refuses a merged adapter and removes an unmerged one", () => {
    const { lm, layer } = twoAdapters();
    lm.merge({ adapterNames: ["other"] });
    expect(() => lm.deleteAdapter("other")).toThrow(StateError);
    expect(layer.adapterNames).toEqual(["default", "other"]);
    lm.unmerge();
    lm.deleteAdapter("other");
    expect(layer.adapterNames).toEqual(["default"]);
    expect(layer.lora_A.keys()).toEqual(["default"]);
    expect(() => lm.setAdapter("other")).toThrow(/no adapter/);
    expect(() => lm.addAdapter("default", { targetModules: ["0"] })).toThrow(/already exists/);
  });

  test("trainable parameter count, as PEFT prints it", () => {
    const lm = lora.injectAdapter(new TinyModel(), { r: 4, targetModules: ["fc1"] });
    // fc1: A (4, 8) + B (16, 4) = 96; total = 12·8 + (8·16 + 16) + (16·12 + 12) + 96 = 540
    expect(lm.trainableParameterCount()).toEqual({ trainable: 96, total: 540, percent: (100 * 96) / 540 });
    expect(lm.formatTrainableParameters()).toBe("trainable params: 96 || all params: 540 || trainable%: 17.7778");
  });

  test("embedding ids out of range are a clear error", () => {
    const lm = lora.injectAdapter(new TinyModel(), { targetModules: ["emb"] });
    expect(() => lm.forward(tensor([3, 12], { dtype: "int64" }))).toThrow(/ids: token id 12 is out of range for an embedding of 12 rows/);
    expect(() => lm.forward(tensor([-1], { dtype: "int64" }))).toThrow(/token id -1/);
    expect(() => lm.forward(tensor([1.5]))).toThrow(/int64 or int32/);
  });
});
