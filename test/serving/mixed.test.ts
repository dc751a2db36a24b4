import { Tensor, init, lora, manualSeed, nn, noGrad, randn, tensor } from "../../lib";
import type { Dtype } from "../../lib";
import { thrownBy } from "../helpers/errors";
import { maxAbsDiff } from "../helpers/stats";

/**
 * Adapters of different ranks and scalings, with nonzero B so that each one changes the output.
 * Factors ~ N(0, 0.2²) keep outputs near 1, where fp32's rounding is well under 1e-6.
 */
const ADAPTERS: [string, lora.LoraConfig][] = [
  ["a", { r: 2, loraAlpha: 4, targetModules: ["0"] }],
  ["b", { r: 5, loraAlpha: 3, targetModules: ["0"] }],
  ["c", { r: 8, loraAlpha: 16, targetModules: ["0"], useRslora: true }],
];

function adapted(layer: nn.Module): lora.LoraModel<nn.Sequential> {
  const lm = lora.injectAdapter(new nn.Sequential(layer), ADAPTERS[0][1], ADAPTERS[0][0]);
  for (const [name, config] of ADAPTERS.slice(1)) lm.addAdapter(name, config);
  for (const [, l] of lm.loraLayers()) for (const name of l.adapterNames) for (const f of l.factors(name)) noGrad(() => init.normal_(f, 0, 0.2));
  lm.eval();
  return lm;
}

const row = (t: Tensor, i: number) => t.narrow(0, i, 1);

/** Checks a mixed batch row by row against single-adapter runs of the whole batch and the base output. */
function checkMixed(lm: lora.LoraModel<nn.Sequential>, input: Tensor, names: string[]): void {
  const base = lm.withAdaptersDisabled(() => lm.forward(input) as Tensor);
  const single = new Map<string, Tensor>();
  for (const [name] of ADAPTERS) {
    lm.setAdapter(name);
    single.set(name, lm.forward(input) as Tensor);
  }
  const mixed = lm.withAdapterNames(names, () => lm.forward(input) as Tensor);
  expect(mixed.shape).toEqual(base.shape);
  names.forEach((name, i) => {
    if (name === lora.BASE_ADAPTER) {
      expect(row(mixed, i).toBytes().equals(row(base, i).toBytes())).toBe(true);
    } else {
      expect(maxAbsDiff(row(mixed, i), row(single.get(name)!, i))).toBeLessThanOrEqual(1e-6);
      // The adapter really acts on this row.
      expect(maxAbsDiff(row(mixed, i), row(base, i))).toBeGreaterThan(1e-3);
    }
  });
}

const NAMES = ["c", "a", "__base__", "b", "a", "c", "__base__"];

describe("mixed-adapter batches equal per-adapter runs", () => {
  test("Linear, 2-D input (one token per row)", () => {
    manualSeed(11);
    const lm = adapted(new nn.Linear(6, 5));
    checkMixed(lm, randn([NAMES.length, 6]), NAMES);
  });

  test("Linear, 3-D input (rows of sequences)", () => {
    manualSeed(12);
    const lm = adapted(new nn.Linear(6, 5));
    checkMixed(lm, randn([NAMES.length, 3, 6]), NAMES);
  });

  test("Conv1D (fan_in_fan_out)", () => {
    manualSeed(13);
    const conv = new nn.Conv1D(5, 6);
    noGrad(() => init.normal_(conv.bias));
    const lm = adapted(conv);
    checkMixed(lm, randn([NAMES.length, 2, 6]), NAMES);
  });

  test("Embedding", () => {
    manualSeed(14);
    const lm = adapted(new nn.Embedding(11, 4, { paddingIdx: 0 }));
    const ids = tensor(
      NAMES.map((_, i) => [(i * 3) % 11, (i * 5 + 1) % 11, 0]),
      { dtype: "int64" },
    );
    checkMixed(lm, ids, NAMES);
  });

  test("every row on one adapter, rows grouped by adapter, and every row on the base", () => {
    manualSeed(15);
    const lm = adapted(new nn.Linear(6, 5));
    const x = randn([4, 6]);
    checkMixed(lm, x, ["b", "b", "b", "b"]);
    // Rows already grouped by adapter are computed in place; the result is the same.
    checkMixed(lm, x, ["a", "a", "b", "c"]);
    checkMixed(lm, x, ["__base__", "__base__", "__base__", "__base__"]);
  });

  test("a model of several layers: each row keeps its adapter through the stack", () => {
    manualSeed(16);
    const model = new nn.Sequential(new nn.Embedding(9, 6), new nn.Linear(6, 6), new nn.Linear(6, 3));
    const lm = lora.injectAdapter(model, { r: 3, loraAlpha: 6, targetModules: ["0", "1", "2"] }, "x");
    lm.addAdapter("y", { r: 6, loraAlpha: 2, targetModules: ["1", "2"] });
    for (const [, l] of lm.loraLayers()) for (const n of l.adapterNames) for (const f of l.factors(n)) noGrad(() => init.normal_(f, 0, 0.3));
    lm.eval();
    const ids = tensor(
      [
        [1, 2],
        [3, 4],
        [5, 6],
      ],
      { dtype: "int64" },
    );
    const names = ["y", "__base__", "x"];
    const mixed = lm.withAdapterNames(names, () => lm.forward(ids) as Tensor);
    names.forEach((name, i) => {
      const one = ids.narrow(0, i, 1);
      const expected = name === "__base__" ? lm.withAdaptersDisabled(() => lm.forward(one) as Tensor) : (lm.setAdapter(name), lm.forward(one) as Tensor);
      expect(maxAbsDiff(row(mixed, i), expected)).toBeLessThanOrEqual(1e-6);
    });
  });

  test("in-place changes of the factors show in the next mixed batch", () => {
    manualSeed(17);
    const lm = adapted(new nn.Linear(6, 5));
    const x = randn([3, 6]);
    const names = ["a", "b", "c"];
    lm.withAdapterNames(names, () => lm.forward(x));
    const [, layer] = lm.loraLayers()[0];
    noGrad(() => init.normal_(layer.factors("b")[1], 0, 2));
    checkMixed(lm, x, names);
  });

  test("gradients reach each row's own factors", () => {
    manualSeed(18);
    const lm = adapted(new nn.Linear(4, 3));
    lm.setAdapter(["a", "b", "c"]);
    const [, layer] = lm.loraLayers()[0];
    const x = randn([2, 4]);
    lm.withAdapterNames(["a", "c"], () => (lm.forward(x) as Tensor).sum().backward());
    expect(layer.factors("a")[0].grad).not.toBeNull();
    expect(layer.factors("c")[1].grad).not.toBeNull();
    // "b" served no row: its factors got no gradient, or a zero one.
    const gb = layer.factors("b")[1].grad;
    if (gb) expect(gb.abs().sum().item()).toBe(0);
    // Against the single-adapter gradient of row 0 with adapter "a".
    const gA = layer.factors("a")[0].grad!.clone();
    layer.factors("a")[0].grad = null;
    lm.setAdapter("a");
    (lm.forward(x.narrow(0, 0, 1)) as Tensor).sum().backward();
    expect(maxAbsDiff(gA, layer.factors("a")[0].grad!)).toBeLessThanOrEqual(1e-6);
  });

  test("Embedding gradients: each row's adapter, none for the padding token's column", () => {
    manualSeed(22);
    const lm = adapted(new nn.Embedding(7, 3, { paddingIdx: 0 }));
    lm.setAdapter(["a", "b", "c"]);
    const [, layer] = lm.loraLayers()[0];
    const ids = tensor(
      [
        [1, 0, 2],
        [3, 4, 0],
      ],
      { dtype: "int64" },
    );
    lm.withAdapterNames(["b", "c"], () => (lm.forward(ids) as Tensor).sum().backward());
    const gB = layer.factors("b")[0].grad!;
    expect(gB.narrow(1, 0, 1).abs().sum().item()).toBe(0); // padding column
    const mixedGrad = gB.clone();
    layer.factors("b")[0].grad = null;
    lm.setAdapter("b");
    (lm.forward(ids.narrow(0, 0, 1)) as Tensor).sum().backward();
    expect(maxAbsDiff(mixedGrad, layer.factors("b")[0].grad!)).toBeLessThanOrEqual(1e-6);
  });

  test.each(["float16", "bfloat16"] as Dtype[])("%s base: within the dtype's rounding of the per-adapter run", (dtype) => {
    manualSeed(19);
    const lm = adapted(new nn.Linear(8, 4, { dtype }));
    const x = randn([3, 8]).to({ dtype });
    const mixed = lm.withAdapterNames(["b", "__base__", "a"], () => lm.forward(x) as Tensor);
    lm.setAdapter("b");
    const b = lm.forward(x) as Tensor;
    const base = lm.withAdaptersDisabled(() => lm.forward(x) as Tensor);
    expect(mixed.dtype).toBe(dtype);
    expect(maxAbsDiff(row(mixed, 0).to({ dtype: "float32" }), row(b, 0).to({ dtype: "float32" }))).toBeLessThan(0.05);
    expect(row(mixed, 1).equal(row(base, 1))).toBe(true);
  });
});

describe("PEFT's rules for adapter names", () => {
  const setup = () => {
    manualSeed(20);
    return adapted(new nn.Linear(6, 5));
  };

  test("an unknown name is refused before fn runs, naming the row and the adapters", () => {
    const lm = setup();
    const fn = jest.fn();
    const err = thrownBy(() => lm.withAdapterNames(["a", "nope"], fn));
    expect(err).toBeInstanceOf(RangeError);
    expect(err.message).toMatch(/adapterNames\[1\].*"nope".*a, b, c, __base__/);
    expect(fn).not.toHaveBeenCalled();
  });

  test("a batch whose length differs from the names is refused", () => {
    const lm = setup();
    const err = thrownBy(() => lm.withAdapterNames(["a", "b"], () => lm.forward(randn([3, 6]))));
    expect(err).toBeInstanceOf(RangeError);
    expect(err.message).toMatch(/one name per row.*\(.*3\), got 2 names/);
    // The scope ended: a plain forward works again.
    expect((lm.forward(randn([3, 6])) as Tensor).shape).toEqual([3, 5]);
  });

  test("a merged adapter is refused", () => {
    const lm = setup();
    lm.merge({ adapterNames: ["b"] });
    const err = thrownBy(() => lm.withAdapterNames(["a"], () => lm.forward(randn([1, 6]))));
    expect(err.name).toBe("StateError");
    expect(err.message).toMatch(/merged adapters; unmerge\(\) first/);
    lm.unmerge();
    expect(() => lm.withAdapterNames(["a"], () => lm.forward(randn([1, 6])))).not.toThrow();
  });

  test("bad arguments: not an array, an empty list, a non-string, no function", () => {
    const lm = setup();
    expect(thrownBy(() => lm.withAdapterNames("a" as unknown as string[], () => 0))).toBeInstanceOf(TypeError);
    expect(thrownBy(() => lm.withAdapterNames([], () => 0))).toBeInstanceOf(TypeError);
    expect(thrownBy(() => lm.withAdapterNames(["a", 3 as unknown as string], () => 0)).message).toMatch(/adapterNames\[1\]: expected an adapter name/);
    expect(thrownBy(() => lm.withAdapterNames(["a"], null as unknown as () => void))).toBeInstanceOf(TypeError);
  });

  test("scopes do not nest; an async fn holds the names until it settles", async () => {
    const lm = setup();
    const x = randn([2, 6]);
    expect(thrownBy(() => lm.withAdapterNames(["a", "b"], () => lm.withAdapterNames(["a", "b"], () => 0))).message).toMatch(/do not nest/);
    const pending = lm.withAdapterNames(["a", "b"], async () => {
      await Promise.resolve();
      return lm.forward(x) as Tensor;
    });
    expect(thrownBy(() => lm.forward(randn([3, 6]))).message).toMatch(/one name per row/);
    await pending;
    expect((lm.forward(randn([3, 6])) as Tensor).shape).toEqual([3, 5]);
  });

  test("training mode with dropout is refused; eval runs without dropout", () => {
    manualSeed(21);
    const lm = lora.injectAdapter(new nn.Sequential(new nn.Linear(6, 5)), { r: 2, targetModules: ["0"], loraDropout: 0.5 }, "d");
    lm.train();
    expect(thrownBy(() => lm.withAdapterNames(["d"], () => lm.forward(randn([1, 6])))).message).toMatch(/dropout 0.5.*eval\(\)/);
    // "__base__" rows need no dropout.
    expect(() => lm.withAdapterNames(["__base__"], () => lm.forward(randn([1, 6])))).not.toThrow();
  });
});
