/**
 * The wording of a failed fused LoRA forward or merge, case by case: which tensor is at fault when
 * the base weight is half precision and the factors are kept in float32, which factor shapes fit a
 * layer, which name a disposed factor gets, and that the native error passes through unchanged when
 * the input itself is disposed. Every refusal leaves the layer's weights as they were.
 */
import { Dtype, StateError, Tensor, lora, nn, randn, tensor } from "../../lib";
import { ErrorCase, itThrowsEach, thrownBy } from "../helpers/errors";

class EmbFc extends nn.Module {
  emb = new nn.Embedding(10, 4);
  fc = new nn.Linear(4, 6);
  override forward(ids: Tensor): Tensor {
    return this.fc.forward(this.emb.forward(ids));
  }
}

interface Layers {
  fc: lora.LoraLinear;
  emb: lora.LoraEmbedding;
}

/** An EmbFc of `dtype` with adapters "default" and "other" (both active) on both layers. */
function injected(dtype: Dtype = "float32"): Layers {
  const m = lora.injectAdapter(new EmbFc().to({ dtype }), { targetModules: ["emb", "fc"], r: 2 });
  m.addAdapter("other", { targetModules: ["emb", "fc"], r: 2 });
  m.setAdapter(["default", "other"]);
  const layer = (p: string) => m.loraLayers().find(([q]) => q === p)![1];
  return { fc: layer("fc") as lora.LoraLinear, emb: layer("emb") as lora.LoraEmbedding };
}

/** Replaces factor `which` of adapter `name` with `t` (as a caller writing the fields directly could). */
function setFactor(layer: lora.LoraLinear | lora.LoraEmbedding, name: string, which: "A" | "B", t: Tensor): void {
  if (layer instanceof lora.LoraLinear) (which === "A" ? layer.lora_A : layer.lora_B).get(name)!.weight = t;
  else (which === "A" ? layer.lora_embedding_A : layer.lora_embedding_B).set(name, t);
}

/** Gives every adapter of `fc` float32 factors of the right shapes (full-precision adapters on a half base). */
function widen(fc: lora.LoraLinear): void {
  for (const name of fc.adapterNames) {
    setFactor(fc, name, "A", randn([2, 4]));
    setFactor(fc, name, "B", randn([6, 2]));
  }
}

/** Every tensor of the layer's state, as bytes (to see that a refusal changed nothing). */
function snapshot(layer: lora.LoraLinear | lora.LoraEmbedding): Record<string, string> {
  return Object.fromEntries(Object.entries(layer.stateDict()).map(([k, t]) => [k, t.toBytes().toString("hex")]));
}

describe("LoRA Linear forward on a half-precision base", () => {
  const cases: ErrorCase[] = [];
  for (const half of ["float16", "bfloat16"] as const) {
    cases.push([
      `${half} base with float32 factors: the input's width is at fault, not the factors' dtype`,
      () => {
        const { fc } = injected(half);
        widen(fc);
        return fc.forward(randn([2, 5], { dtype: half }));
      },
      /^input: expected last dimension 4 \(in_features\), got shape \[2, 5\]$/,
      RangeError,
    ]);
  }
  cases.push(
    [
      "float16 base, float64 A with a float32 B: A is named (only a float32 pair is allowed)",
      () => {
        const { fc } = injected("float16");
        widen(fc);
        setFactor(fc, "other", "A", randn([2, 4], { dtype: "float64" }));
        return fc.forward(randn([2, 4], { dtype: "float16" }));
      },
      /^adapter "other": lora_A: expected dtype float16 \(the layer's weight dtype\), got float64$/,
      TypeError,
    ],
    [
      // The pair is not all float32, so each factor must match the weight: A is the first that does not.
      "float16 base, float32 A with a float64 B: the mixed pair is refused at A",
      () => {
        const { fc } = injected("float16");
        widen(fc);
        setFactor(fc, "default", "B", randn([6, 2], { dtype: "float64" }));
        return fc.forward(randn([2, 4], { dtype: "float16" }));
      },
      /^adapter "default": lora_A: expected dtype float16 \(the layer's weight dtype\), got float32$/,
      TypeError,
    ],
    [
      // Full-precision factors are allowed only on a half base: a float64 base needs float64 factors.
      "float64 base with float32 factors: lora_A is named",
      () => {
        const { fc } = injected("float64");
        widen(fc);
        return fc.forward(randn([2, 4], { dtype: "float64" }));
      },
      /^adapter "default": lora_A: expected dtype float64 \(the layer's weight dtype\), got float32$/,
      TypeError,
    ],
  );
  itThrowsEach(cases);

  it("changes nothing when it refuses", () => {
    const { fc } = injected("float16");
    widen(fc);
    const before = snapshot(fc);
    thrownBy(() => fc.forward(randn([2, 5], { dtype: "float16" })));
    expect(snapshot(fc)).toEqual(before);
  });
});

describe("LoRA Linear forward: factor shapes that do not fit", () => {
  const cases: ErrorCase[] = [
    [
      "an A with a third dimension",
      () => {
        const { fc } = injected();
        setFactor(fc, "default", "A", randn([2, 4, 1]));
        return fc.forward(randn([2, 4]));
      },
      /^adapter "default": lora_A \[2, 4, 1\] and lora_B \[6, 2\] do not fit a Linear\(4, 6\)$/,
      RangeError,
    ],
    [
      "a B with a third dimension",
      () => {
        const { fc } = injected();
        setFactor(fc, "other", "B", randn([6, 2, 1]));
        return fc.forward(randn([2, 4]));
      },
      /^adapter "other": lora_A \[2, 4\] and lora_B \[6, 2, 1\] do not fit a Linear\(4, 6\)$/,
      RangeError,
    ],
    [
      "A and B of different ranks",
      () => {
        const { fc } = injected();
        setFactor(fc, "other", "A", randn([3, 4]));
        return fc.forward(randn([2, 4]));
      },
      /^adapter "other": lora_A \[3, 4\] and lora_B \[6, 2\] do not fit a Linear\(4, 6\)$/,
      RangeError,
    ],
    [
      // A one-dimensional input of the right width is fine: the adapter is what does not fit.
      "a one-dimensional input with an adapter that does not fit",
      () => {
        const { fc } = injected();
        setFactor(fc, "default", "A", randn([3, 4]));
        return fc.forward(randn([4]));
      },
      /^adapter "default": lora_A \[3, 4\] and lora_B \[6, 2\] do not fit a Linear\(4, 6\)$/,
      RangeError,
    ],
  ];
  itThrowsEach(cases);

  it("changes nothing when it refuses", () => {
    const { fc } = injected();
    setFactor(fc, "other", "A", randn([3, 4]));
    const before = snapshot(fc);
    thrownBy(() => fc.forward(randn([2, 4])));
    expect(snapshot(fc)).toEqual(before);
  });
});

describe("disposed tensors at the LoRA kernels", () => {
  it("a disposed input gets the native error naming the input", () => {
    const { fc } = injected();
    const x = randn([2, 4]);
    x.dispose();
    expect(thrownBy(() => fc.forward(x)).message).toBe("input: the Tensor was disposed and can no longer be used");
  });

  it("disposed ids get the native error naming the ids", () => {
    const { emb } = injected();
    const ids = tensor([1, 2], { dtype: "int64" });
    ids.dispose();
    expect(thrownBy(() => emb.forward(ids)).message).toBe("ids: the Tensor was disposed and can no longer be used");
  });

  it("a disposed embedding factor is named by its adapter and PEFT name at forward", () => {
    const { emb } = injected();
    emb.factors("other")[0].dispose();
    const err = thrownBy(() => emb.forward(tensor([1, 2], { dtype: "int64" })));
    expect(err).toBeInstanceOf(StateError);
    expect(err.message).toBe('adapter "other": lora_embedding_A: the Tensor was disposed and can no longer be used');
  });

  it("a disposed embedding factor is named at merge, and the weight is unchanged", () => {
    const { emb } = injected();
    const weight = emb.base_layer.weight.toBytes().toString("hex");
    emb.factors("default")[0].dispose();
    const err = thrownBy(() => emb.merge());
    expect(err).toBeInstanceOf(StateError);
    expect(err.message).toBe('adapter "default": lora_embedding_A: the Tensor was disposed and can no longer be used');
    expect(emb.base_layer.weight.toBytes().toString("hex")).toBe(weight);
    expect(emb.mergedAdapters).toEqual([]);
  });

  it("a disposed Linear factor is named at merge, and the weight is unchanged", () => {
    const { fc } = injected();
    const weight = fc.base_layer.weight.toBytes().toString("hex");
    fc.factors("other")[1].dispose();
    const err = thrownBy(() => fc.merge());
    expect(err).toBeInstanceOf(StateError);
    expect(err.message).toBe('adapter "other": lora_B: the Tensor was disposed and can no longer be used');
    expect(fc.base_layer.weight.toBytes().toString("hex")).toBe(weight);
    expect(fc.mergedAdapters).toEqual([]);
  });
});
