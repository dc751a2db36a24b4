/**
 * Mixed-adapter batches at their edges: outputs row by row against the LoRA formula computed with
 * plain tensor ops (training mode without dropout, disabled adapters, the caller's names array
 * changed inside the scope), Embedding gradients without a padding index, and the exact refusal
 * for each bad argument or state, with nothing changed afterwards.
 */
import { Tensor, init, lora, manualSeed, nn, noGrad, randn, tensor } from "../../lib";
import { thrownBy } from "../helpers/errors";

/** Adapters of different ranks and scalings on a Linear(6, 5), B non-zero, dropout `dropout`. */
function adapted(dropout = 0): lora.LoraModel<nn.Sequential> {
  manualSeed(31);
  const lm = lora.injectAdapter(new nn.Sequential(new nn.Linear(6, 5)), { r: 2, loraAlpha: 4, targetModules: ["0"], loraDropout: dropout }, "a");
  lm.addAdapter("b", { r: 3, loraAlpha: 3, targetModules: ["0"], loraDropout: dropout });
  for (const [, l] of lm.loraLayers()) for (const n of l.adapterNames) for (const f of l.factors(n)) noGrad(() => init.normal_(f, 0, 0.3));
  lm.eval();
  return lm;
}

const SCALES: Record<string, number> = { a: 4 / 2, b: 3 / 3 };

function linearOf(lm: lora.LoraModel<nn.Sequential>): lora.LoraLinear {
  return lm.loraLayers()[0][1] as lora.LoraLinear;
}

/** Row `i` of the batch by the formula: x Wᵀ + b, plus s·(x Aᵀ) Bᵀ for its adapter ("__base__": none). */
function expectedRows(lm: lora.LoraModel<nn.Sequential>, x: Tensor, names: string[]): Tensor[] {
  const layer = linearOf(lm);
  const { weight, bias } = layer.base_layer;
  return names.map((name, i) => {
    const xi = x.narrow(0, i, 1);
    const base = xi.matmul(weight.t()).add(bias!);
    if (name === lora.BASE_ADAPTER) return base;
    const [A, B] = layer.factors(name);
    return base.add(xi.matmul(A.t()).matmul(B.t()).mul(SCALES[name]));
  });
}

function expectRowsClose(out: Tensor, rows: Tensor[]): void {
  rows.forEach((r, i) => expect(out.narrow(0, i, 1).allclose(r, { rtol: 1e-5, atol: 1e-6 })).toBe(true));
}

/** Every tensor of the model's state, as bytes. */
function snapshot(lm: lora.LoraModel<nn.Sequential>): Record<string, string> {
  return Object.fromEntries(Object.entries(lm.stateDict()).map(([k, t]) => [k, t.toBytes().toString("hex")]));
}

describe("mixed batches against the LoRA formula", () => {
  test("in training mode, adapters without dropout are allowed and give each row its adapter", () => {
    const lm = adapted(0);
    lm.train();
    const x = randn([4, 6]);
    const names = ["b", "a", "__base__", "b"];
    const out = lm.withAdapterNames(names, () => lm.forward(x) as Tensor);
    expectRowsClose(out, expectedRows(lm, x, names));
  });

  test("with adapters disabled, every row gets the base output", () => {
    const lm = adapted();
    const x = randn([3, 6]);
    lm.disableAdapters();
    const out = lm.withAdapterNames(["a", "b", "__base__"], () => lm.forward(x) as Tensor);
    expectRowsClose(out, expectedRows(lm, x, ["__base__", "__base__", "__base__"]));
    // And the adapters do act once enabled again.
    lm.enableAdapters();
    const on = lm.withAdapterNames(["a", "b", "__base__"], () => lm.forward(x) as Tensor);
    expectRowsClose(on, expectedRows(lm, x, ["a", "b", "__base__"]));
  });

  test("the names are those given at the call: changing the caller's array inside the scope changes nothing", () => {
    const lm = adapted();
    const x = randn([2, 6]);
    const names = ["a", "b"];
    const out = lm.withAdapterNames(names, () => {
      names[0] = "__base__";
      names[1] = "a";
      return lm.forward(x) as Tensor;
    });
    expectRowsClose(out, expectedRows(lm, x, ["a", "b"]));
  });

  test("Embedding without a padding index: every id, 1 included, sends its gradient to A (as the per-adapter run)", () => {
    manualSeed(32);
    const lm = lora.injectAdapter(new nn.Sequential(new nn.Embedding(5, 3)), { r: 2, targetModules: ["0"] }, "e");
    const layer = lm.loraLayers()[0][1] as lora.LoraEmbedding;
    for (const f of layer.factors("e")) noGrad(() => init.normal_(f, 0, 0.3));
    lm.eval();
    const ids = tensor(
      [
        [1, 0, 2],
        [1, 4, 3],
      ],
      { dtype: "int64" },
    );
    const [A, B] = layer.factors("e");
    const out = lm.withAdapterNames(["e", "__base__"], () => lm.forward(ids) as Tensor);
    // Row 0 by the formula: W[ids] + s·Aᵀ[ids] Bᵀ (s = alpha / r = 8 / 2).
    const row0 = ids.narrow(0, 0, 1).reshape([-1]);
    const expected = layer.base_layer.weight.indexSelect(0, row0).add(A.t().indexSelect(0, row0).matmul(B.t()).mul(4));
    expect(out.narrow(0, 0, 1).reshape([3, 3]).allclose(expected, { rtol: 1e-5, atol: 1e-6 })).toBe(true);
    out.sum().backward();
    const mixedGrad = A.grad!.clone();
    // d(sum)/dA[:, id] = s·Σ_rows(B) times the id's count in row 0: id 1 once, so its column is non-zero.
    expect(mixedGrad.narrow(1, 1, 1).abs().sum().item()).toBeGreaterThan(0);
    A.grad = null;
    (lm.forward(ids.narrow(0, 0, 1)) as Tensor).sum().backward();
    expect(mixedGrad.sub(A.grad!).abs().max().item()).toBeLessThanOrEqual(1e-6);
  });
});

describe("refusals, word for word", () => {
  test("a batch whose first dimension differs from the names, and a scalar input", () => {
    const lm = adapted();
    const before = snapshot(lm);
    const rows = thrownBy(() => lm.withAdapterNames(["a", "b"], () => lm.forward(randn([3, 6]))));
    expect(rows).toBeInstanceOf(RangeError);
    expect(rows.message).toBe("adapterNames: expected one name per row of the batch (the input's first dimension, 3), got 2 names");
    const scalar = thrownBy(() => lm.withAdapterNames(["a"], () => lm.forward(randn([]))));
    expect(scalar).toBeInstanceOf(RangeError);
    expect(scalar.message).toBe("adapterNames: expected one name per row of the batch (the input's first dimension, none: a scalar input), got 1 names");
    expect(snapshot(lm)).toEqual(before);
  });

  test("an input that is not a tensor gets the same message inside a scope as outside one", () => {
    const lm = adapted();
    const notTensor = [[1, 2, 3, 4, 5, 6]] as unknown as Tensor;
    const outside = thrownBy(() => lm.forward(notTensor));
    const inside = thrownBy(() => lm.withAdapterNames(["a"], () => lm.forward(notTensor)));
    expect(inside).toBeInstanceOf(TypeError);
    expect(inside.message).toBe("input: expected a Tensor, got an array of length 1");
    expect(inside.message).toBe(outside.message);
  });

  test("names that are not a non-empty array, and an fn that is not a function; fn never runs", () => {
    const lm = adapted();
    const fn = jest.fn();
    const cases: [() => unknown, string][] = [
      [() => lm.withAdapterNames("a" as unknown as string[], fn), 'adapterNames: expected a non-empty array with one adapter name per row, got the string "a"'],
      [() => lm.withAdapterNames([], fn), "adapterNames: expected a non-empty array with one adapter name per row, got an array of length 0"],
      [() => lm.withAdapterNames(["a"], null as unknown as () => void), "fn: expected a function, got null"],
      [() => lm.withAdapterNames(["nope"], 3 as unknown as () => void), "fn: expected a function, got 3"],
    ];
    for (const [call, message] of cases) {
      const err = thrownBy(call);
      expect(err).toBeInstanceOf(TypeError);
      expect(err.message).toBe(message);
    }
    expect(fn).not.toHaveBeenCalled();
  });

  test("merged adapters at the call: the layers are named, with 'has' for one and 'have' for several", () => {
    manualSeed(33);
    const lm = lora.injectAdapter(new nn.Sequential(new nn.Linear(4, 4), new nn.Linear(4, 4)), { r: 2, targetModules: ["0", "1"] }, "a");
    const fn = jest.fn();
    lm.loraLayers()[1][1].merge();
    const one = thrownBy(() => lm.withAdapterNames(["a"], fn));
    expect(one.name).toBe("StateError");
    expect(one.message).toBe("withAdapterNames: 1 has merged adapters; unmerge() first");
    lm.merge();
    expect(thrownBy(() => lm.withAdapterNames(["a"], fn)).message).toBe("withAdapterNames: 0, 1 have merged adapters; unmerge() first");
    expect(fn).not.toHaveBeenCalled();
    lm.unmerge();
    expect(() => lm.withAdapterNames(["a"], () => lm.forward(randn([1, 4])))).not.toThrow();
  });

  test("adapters merged inside the scope are named is refused at the next forward; after unmerge() the batch runs", () => {
    const lm = adapted();
    const x = randn([2, 6]);
    const err = thrownBy(() =>
      lm.withAdapterNames(["a", "b"], () => {
        lm.merge({ adapterNames: ["a", "b"] });
        return lm.forward(x);
      }),
    );
    expect(err.name).toBe("StateError");
    expect(err.message).toBe("withAdapterNames: adapters a, b are merged into a layer; unmerge() first (mixed batches need unmerged adapters)");
    lm.unmerge();
    const out = lm.withAdapterNames(["a", "b"], () => lm.forward(x) as Tensor);
    expectRowsClose(out, expectedRows(lm, x, ["a", "b"]));
  });

  test("an async merge in flight: the scope is refused at the call, and a forward inside a scope is refused", async () => {
    const lm = adapted();
    const merging = lm.mergeAsync({ adapterNames: ["b"] });
    const fn = jest.fn();
    const atCall = thrownBy(() => lm.withAdapterNames(["a"], fn));
    expect(atCall.name).toBe("StateError");
    expect(atCall.message).toBe("withAdapterNames: an async merge is in flight on this layer; await it first");
    expect(fn).not.toHaveBeenCalled();
    await merging;
    lm.unmerge();
    const x = randn([1, 6]);
    let inside: Promise<unknown> | undefined;
    const err = thrownBy(() =>
      lm.withAdapterNames(["a"], () => {
        inside = lm.mergeAsync({ adapterNames: ["b"] });
        return lm.forward(x);
      }),
    );
    expect(err.name).toBe("StateError");
    expect(err.message).toBe("forward: an async merge is in flight on this layer; await it first");
    await inside;
    lm.unmerge();
    expectRowsClose(
      lm.withAdapterNames(["a"], () => lm.forward(x) as Tensor),
      expectedRows(lm, x, ["a"]),
    );
  });
});
