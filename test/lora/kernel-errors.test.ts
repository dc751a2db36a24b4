/**
 * Bad input at the fused LoRA kernels: the native side checks only the JS types, the counts and
 * the id ranges it indexes by; every other mistake is refused by libtorch and worded by the
 * facade (lib/lora/kernel-checks.ts), naming the argument or the adapter. Nothing is changed.
 */
import { StateError, Tensor, init, lora, nn, noGrad, randn, tensor } from "../../lib";
import { native } from "../../lib/binding";
import { handleOf } from "../../lib/tensor";
import { ErrorCase, itThrowsEach, thrownBy } from "../helpers/errors";

class EmbFc extends nn.Module {
  emb = new nn.Embedding(10, 4);
  fc = new nn.Linear(4, 6);
  override forward(ids: Tensor): Tensor {
    return this.fc.forward(this.emb.forward(ids));
  }
}

/** An EmbFc with adapters "default" (and "other", active with it) on both layers, B non-zero. */
function injected(): { fc: lora.LoraLinear; emb: lora.LoraEmbedding } {
  const m = lora.injectAdapter(new EmbFc(), { targetModules: ["emb", "fc"], r: 2 });
  m.addAdapter("other", { targetModules: ["emb", "fc"], r: 2 });
  m.setAdapter(["default", "other"]);
  for (const [, l] of m.loraLayers()) for (const n of l.adapterNames) noGrad(() => init.normal_(l.factors(n)[1]));
  const layer = (p: string) => m.loraLayers().find(([q]) => q === p)![1];
  return { fc: layer("fc") as lora.LoraLinear, emb: layer("emb") as lora.LoraEmbedding };
}

/** Replaces factor `which` of adapter `name` with `t` (as a caller writing the fields directly could). */
function setFactor(layer: lora.LoraLinear | lora.LoraEmbedding, name: string, which: "A" | "B", t: Tensor): void {
  if (layer instanceof lora.LoraLinear) (which === "A" ? layer.lora_A : layer.lora_B).get(name)!.weight = t;
  else (which === "A" ? layer.lora_embedding_A : layer.lora_embedding_B).set(name, t);
}

const ids = () => tensor([1, 9], { dtype: "int64" });

describe("LoRA Linear forward", () => {
  const cases: ErrorCase[] = [
    [
      "input of another dtype",
      () => injected().fc.forward(randn([2, 4], { dtype: "float64" })),
      /^input: expected dtype float32 \(the layer's weight dtype\), got float64$/,
      TypeError,
    ],
    [
      "input of the wrong width",
      () => injected().fc.forward(randn([2, 5])),
      /^input: expected last dimension 4 \(in_features\), got shape \[2, 5\]$/,
      RangeError,
    ],
    [
      "a factor of another dtype",
      () => {
        const { fc } = injected();
        setFactor(fc, "other", "A", randn([2, 4], { dtype: "float64" }));
        return fc.forward(randn([2, 4]));
      },
      /^adapter "other": lora_A: expected dtype float32 \(the layer's weight dtype\), got float64$/,
      TypeError,
    ],
    [
      "a factor that does not fit the layer",
      () => {
        const { fc } = injected();
        setFactor(fc, "default", "A", randn([2, 3]));
        return fc.forward(randn([2, 4]));
      },
      /^adapter "default": lora_A \[2, 3\] and lora_B \[6, 2\] do not fit a Linear\(4, 6\)$/,
      RangeError,
    ],
    [
      // A one-row B would broadcast over the output in a plain tensor sum.
      "a second adapter whose B has one output row",
      () => {
        const { fc } = injected();
        setFactor(fc, "other", "B", randn([1, 2]));
        return fc.forward(randn([3, 4]));
      },
      /^adapter "other": lora_A \[2, 4\] and lora_B \[1, 2\] do not fit a Linear\(4, 6\)$/,
      RangeError,
    ],
  ];
  itThrowsEach(cases);

  it("names a disposed factor by its adapter", () => {
    const { fc } = injected();
    fc.factors("other")[1].dispose();
    const err = thrownBy(() => fc.forward(randn([2, 4])));
    expect(err).toBeInstanceOf(StateError);
    expect(err.message).toMatch(/^adapter "other": lora_B: the Tensor was disposed and can no longer be used$/);
  });

  it("changes nothing when it refuses", () => {
    const { fc } = injected();
    const before = fc.stateDict();
    const copies = Object.fromEntries(Object.entries(before).map(([k, t]) => [k, t.toBytes().toString("hex")]));
    setFactor(fc, "other", "A", randn([2, 4], { dtype: "float64" }));
    thrownBy(() => fc.forward(randn([2, 4])));
    for (const [k, t] of Object.entries(fc.stateDict())) if (!k.startsWith("lora_A.other")) expect(t.toBytes().toString("hex")).toBe(copies[k]);
  });
});

describe("LoRA Embedding forward", () => {
  const cases: ErrorCase[] = [
    [
      "a factor of another dtype",
      () => {
        const { emb } = injected();
        setFactor(emb, "default", "B", randn([4, 2], { dtype: "float64" }));
        return emb.forward(ids());
      },
      /^adapter "default": lora_embedding_B: expected dtype float32 \(the layer's weight dtype\), got float64$/,
      TypeError,
    ],
    [
      // The lookup reads A's columns by id: a narrower A must be refused, not read past its end.
      "an A with fewer columns than the vocabulary",
      () => {
        const { emb } = injected();
        setFactor(emb, "other", "A", randn([2, 5]));
        return emb.forward(ids());
      },
      /^adapter "other": lora_embedding_A \[2, 5\] and lora_embedding_B \[4, 2\] do not fit an Embedding\(10, 4\)$/,
      RangeError,
    ],
    [
      "a B of the wrong width",
      () => {
        const { emb } = injected();
        setFactor(emb, "other", "B", randn([1, 2]));
        return emb.forward(ids());
      },
      /^adapter "other": lora_embedding_A \[2, 10\] and lora_embedding_B \[1, 2\] do not fit an Embedding\(10, 4\)$/,
      RangeError,
    ],
  ];
  itThrowsEach(cases);
});

// The native side's own checks: the JS types of the options, the counts and the id ranges it
// indexes by (errors made in the addon's realm: checked by message, not instanceof).
describe("LoRA kernel options", () => {
  const w = () => handleOf(randn([6, 4]));
  const A = () => handleOf(randn([2, 4]));
  const B = () => handleOf(randn([6, 2]));
  const linear = { input: handleOf(randn([2, 4])), bias: null, fanInFanOut: false, training: false, dropouts: [0] };
  const merge = { embedding: false, fanInFanOut: false, safe: false, keepBackup: false };
  const cases: [string, () => unknown, RegExp][] = [
    ["no options object", () => (native.loraLinear as (...a: unknown[]) => unknown)(w()), /^options: expected an options object, got/],
    ["factors not an array", () => native.loraLinear({ ...linear, weight: w(), factors: A() as never, scales: [1] }), /^factors: expected an array of tensors/],
    [
      "fewer factors than scales",
      () => native.loraLinear({ ...linear, weight: w(), factors: [A()], scales: [1] }),
      /^factors: expected an \(A, B\) pair per scale and dropout \(2 tensors\), got 1 tensors/,
    ],
    [
      "fewer dropouts than scales",
      () => native.loraLinear({ ...linear, weight: w(), factors: [A(), B(), A(), B()], scales: [1, 1] }),
      /2 scales and 1 dropouts/,
    ],
    [
      "a scale not a number",
      () => native.loraLinear({ ...linear, weight: w(), factors: [A(), B()], scales: ["1" as never] }),
      /^scales\[0\]: expected a number, got/,
    ],
    ["a factor not a tensor", () => native.loraMerge({ ...merge, weight: w(), factors: [A(), 3 as never], scales: [1] }), /^factors\[1\]: expected a Tensor/],
    ["no adapters to merge", () => native.loraMerge({ ...merge, keepBackup: true, weight: w(), factors: [], scales: [] }), /^merge: no adapters to merge/],
    [
      "embedding not a boolean",
      () => native.loraMerge({ ...merge, embedding: "linear" as never, weight: w(), factors: [A(), B()], scales: [1] }),
      /^embedding: expected a boolean/,
    ],
    ["ids out of range", () => injected().emb.forward(tensor([3, 10], { dtype: "int64" })), /^ids: token id 10 is out of range for an embedding of 10 rows/],
    [
      "paddingIdx not an integer",
      () => native.loraEmbedding({ ids: handleOf(ids()), weight: w(), paddingIdx: 0.5, factors: [], scales: [] }),
      /^paddingIdx: expected an integer/,
    ],
  ];
  for (const [name, fn, message] of cases) {
    it(name, () => expect(thrownBy(fn).message).toMatch(message));
  }

  it("merges by name: the delta s·B·A lands in the weight", () => {
    const weight = randn([6, 4]);
    const [a, b] = [randn([2, 4]), randn([6, 2])];
    const expected = weight.add(b.matmul(a).mul(0.5));
    native.loraMerge({ ...merge, weight: handleOf(weight), factors: [handleOf(a), handleOf(b)], scales: [0.5] });
    expect(weight.allclose(expected, { rtol: 1e-6, atol: 1e-6 })).toBe(true);
  });
});
