/**
 * Merge state under re-entrancy and concurrency: withAdaptersDisabled(fn) freezes the adapter
 * state while fn runs (state changes inside throw a StateError) and restores the state of before,
 * bit for bit, however calls nest; async merges never expose a half-merged weight; loadStateDict
 * waits until nothing is merged. Forward is compared with an independent formula computed from
 * copies of the base weights taken before any merge.
 */
import { StateError, Tensor, init, lora, nn, noGrad, tensor } from "../../lib";
import { EmbFc, baseBytes, pristineBytes, pristineOf, referenceForward } from "../helpers/lora-reference";

const IDS = [1, 2, 7, 0];
const ids = (): Tensor => tensor(IDS, { dtype: "int64" });

/** EmbFc with adapters "a" (emb, fc) and "b" (fc), both with non-zero B so every delta counts. */
function twoAdapters(): lora.LoraModel<EmbFc> {
  const m = lora.injectAdapter(new EmbFc(), { targetModules: ["emb", "fc"], r: 2, loraAlpha: 4 }, "a");
  m.addAdapter("b", { targetModules: ["fc"], r: 3, loraAlpha: 3 });
  for (const [, l] of m.loraLayers()) for (const n of l.adapterNames) noGrad(() => init.normal_(l.factors(n)[1], 0, 0.5));
  return m;
}

/** Every layer's visible state, and all parameter bytes. */
function state(m: lora.LoraModel<EmbFc>): string {
  const layers = m.loraLayers().map(([p, l]) => [p, l.adapterNames, l.activeAdapters, l.mergedAdapters, l.disabled]);
  const params = m.model.namedParameters().map(([n, p]) => `${n}:${p.requiresGrad}:${p.toBytes().toString("hex")}`);
  return JSON.stringify([m.adapterNames, m.activeAdapters, layers, params]);
}

const expectClose = (actual: Tensor, expected: Tensor): void => {
  expect(actual.shape).toEqual(expected.shape);
  const diff = (actual.sub(expected).abs().max().toArray() as Float32Array)[0];
  expect(diff).toBeLessThan(1e-5);
};

/** Every state change a user could try inside fn; each must throw a StateError and change nothing. */
const STATE_CHANGES: [string, (m: lora.LoraModel<EmbFc>) => unknown][] = [
  ["merge()", (m) => m.merge()],
  ["merge(b)", (m) => m.merge({ adapterNames: ["b"] })],
  ["unmerge()", (m) => m.unmerge()],
  ["deleteAdapter(a)", (m) => m.deleteAdapter("a")],
  ["deleteAdapter(b)", (m) => m.deleteAdapter("b")],
  ["addAdapter(c)", (m) => m.addAdapter("c", { targetModules: ["fc"], r: 1 })],
  ["setAdapter(b)", (m) => m.setAdapter("b")],
  ["disableAdapters()", (m) => m.disableAdapters()],
  ["enableAdapters()", (m) => m.enableAdapters()],
  ["to(float64)", (m) => m.to({ dtype: "float64" })],
  ["loadStateDict", (m) => m.model.loadStateDict(m.model.stateDict())],
  ["mergeAndUnload()", (m) => m.mergeAndUnload()],
  ["unload()", (m) => m.unload()],
];

describe("withAdaptersDisabled(fn): the adapter state is frozen inside fn and restored bit for bit", () => {
  test.each(STATE_CHANGES)("%s inside fn on a merged model throws a StateError; unmerge then restores the base", (_label, change) => {
    const m = twoAdapters();
    const pristine = pristineOf(m);
    m.merge();
    const before = state(m);
    let inside: unknown;
    m.withAdaptersDisabled(() => {
      // Inside: the base model's output, whatever is merged outside.
      expectClose(m.forward(ids()), referenceForward(m, pristine, IDS, { emb: [], fc: [] }));
      const stateInside = state(m);
      try {
        change(m);
      } catch (e) {
        inside = e;
      }
      expect(state(m)).toBe(stateInside);
    });
    expect(inside).toBeInstanceOf(StateError);
    expect((inside as Error).message).toMatch(/inside withAdaptersDisabled/);
    expect(state(m)).toBe(before);
    expectClose(m.forward(ids()), referenceForward(m, pristine, IDS));
    m.unmerge();
    expect(m.loraLayers().every(([, l]) => !l.merged)).toBe(true);
    expect(baseBytes(m)).toBe(pristineBytes(pristine));
    expectClose(m.forward(ids()), referenceForward(m, pristine, IDS));
  });

  test("mergeAsync / unmergeAsync started inside fn reject with a StateError; cleanup and unmerge stay exact", async () => {
    const m = twoAdapters();
    const pristine = pristineOf(m);
    m.merge({ adapterNames: ["a"] });
    const before = state(m);
    const started: Promise<unknown>[] = [];
    m.withAdaptersDisabled(() => {
      started.push(m.mergeAsync(), m.mergeAsync({ adapterNames: ["b"] }), m.unmergeAsync());
    });
    for (const p of started) await expect(p).rejects.toBeInstanceOf(StateError);
    expect(state(m)).toBe(before);
    m.unmerge();
    expect(baseBytes(m)).toBe(pristineBytes(pristine));
  });

  test("deleteAdapter inside fn leaves the merged adapter in place (no merged adapter that no longer exists)", () => {
    const m = twoAdapters();
    m.merge({ adapterNames: ["a", "b"] });
    expect(() => m.withAdaptersDisabled(() => m.deleteAdapter("b"))).toThrow(StateError);
    expect(m.adapterNames).toEqual(["a", "b"]);
    expect(m.loraLayers().find(([p]) => p === "fc")![1].mergedAdapters).toEqual(["a", "b"]);
  });

  test("nested calls run in the same disabled state; each level ends where it began; errors unwind every level", () => {
    const m = twoAdapters();
    const pristine = pristineOf(m);
    m.merge({ adapterNames: ["b"] });
    m.loraLayers()
      .find(([p]) => p === "emb")![1]
      .setDisabled(true);
    const before = state(m);
    const base = referenceForward(m, pristine, IDS, { emb: [], fc: [] });
    const depth = m.withAdaptersDisabled(() =>
      m.withAdaptersDisabled(() => {
        expectClose(m.forward(ids()), base);
        expect(() => m.merge()).toThrow(StateError);
        return m.withAdaptersDisabled(() => {
          expectClose(m.forward(ids()), base);
          return 3;
        });
      }),
    );
    expect(depth).toBe(3);
    expect(state(m)).toBe(before);
    expect(() =>
      m.withAdaptersDisabled(() =>
        m.withAdaptersDisabled(() => {
          throw new RangeError("from fn");
        }),
      ),
    ).toThrow("from fn");
    expect(state(m)).toBe(before);
    m.enableAdapters(); // the state is mutable again after the last level ends
    m.merge({ adapterNames: ["a"] });
    m.unmerge();
    expect(baseBytes(m)).toBe(pristineBytes(pristine));
  });

  test("an async fn keeps the state frozen until its promise settles, then restores it", async () => {
    const m = twoAdapters();
    const pristine = pristineOf(m);
    m.merge();
    const before = state(m);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const done = m.withAdaptersDisabled(async () => {
      await gate;
      expectClose(m.forward(ids()), referenceForward(m, pristine, IDS, { emb: [], fc: [] }));
      return "ok";
    });
    expect(() => m.unmerge()).toThrow(StateError); // fn has not finished yet
    expectClose(m.forward(ids()), referenceForward(m, pristine, IDS, { emb: [], fc: [] }));
    release();
    await expect(done).resolves.toBe("ok");
    expect(state(m)).toBe(before);
    const failing = m.withAdaptersDisabled(async () => {
      throw new RangeError("async failure");
    });
    await expect(failing).rejects.toThrow("async failure");
    expect(state(m)).toBe(before);
    m.unmerge();
    expect(baseBytes(m)).toBe(pristineBytes(pristine));
  });

  /** Merges, or checks that a disabled model refuses to, with a StateError and no change. */
  const tryMerge = (m: lora.LoraModel<EmbFc>, adapterNames?: string[]): void => {
    if (!m.loraLayers().some(([, l]) => l.disabled)) return m.merge({ adapterNames });
    const before = state(m);
    expect(() => m.merge({ adapterNames })).toThrow(/disabled.*enableAdapters\(\) before merging/);
    expect(state(m)).toBe(before);
  };

  // Every sequence of three calls from this list, then unmerge(): the base is restored bit for
  // bit, and forward equals the formula before and after unmerge.
  const STEPS: [string, (m: lora.LoraModel<EmbFc>) => void][] = [
    ["merge", (m) => tryMerge(m)],
    ["merge(b)", (m) => tryMerge(m, ["b"])],
    ["unmerge", (m) => m.unmerge()],
    ["disable", (m) => m.disableAdapters()],
    ["enable", (m) => m.enableAdapters()],
    ["setAdapter(a,b)", (m) => m.setAdapter(["a", "b"])],
    ["withDisabled(merge)", (m) => m.withAdaptersDisabled(() => expect(() => m.merge()).toThrow(StateError))],
    ["withDisabled(nested)", (m) => m.withAdaptersDisabled(() => m.withAdaptersDisabled(() => m.forward(ids())))],
  ];
  test(`every sequence of 3 of ${STEPS.length} calls, then unmerge, restores the base bit for bit (${STEPS.length ** 3} sequences)`, () => {
    const mismatches: string[] = [];
    for (const s1 of STEPS)
      for (const s2 of STEPS)
        for (const s3 of STEPS) {
          const m = twoAdapters();
          const pristine = pristineOf(m);
          const label = [s1, s2, s3].map(([l]) => l).join(" → ");
          for (const [, step] of [s1, s2, s3]) step(m);
          const err = (): number =>
            (
              m
                .forward(ids())
                .sub(referenceForward(m, pristine, IDS))
                .abs()
                .max()
                .toArray() as Float32Array
            )[0];
          if (!(err() < 1e-5)) mismatches.push(`${label}: forward differs from the formula by ${err()}`);
          m.unmerge();
          if (baseBytes(m) !== pristineBytes(pristine)) mismatches.push(`${label}: unmerge did not restore the base`);
          if (!(err() < 1e-5)) mismatches.push(`${label}: forward after unmerge differs by ${err()}`);
        }
    expect(mismatches).toEqual([]);
  });

  test("fn must be a function", () => {
    const m = twoAdapters();
    expect(() => m.withAdaptersDisabled(null as never)).toThrow(/fn: expected a function/);
  });
});

describe("mergeAsync installs the merged weight on the main thread", () => {
  // A second adapter merged while a first one is merged used to be added in place on the worker:
  // a reader on the main thread could see a half-merged weight.
  test("while a second mergeAsync runs, every read of the weight sees the weight before it, never a partial one", async () => {
    const fc = new nn.Linear(1536, 1536, { bias: false });
    class Big extends nn.Module {
      fc = fc;
      override forward(x: Tensor): Tensor {
        return this.fc.forward(x);
      }
    }
    const m = lora.injectAdapter(new Big(), { targetModules: ["fc"], r: 128 }, "a");
    m.addAdapter("b", { targetModules: ["fc"], r: 128 });
    const layer = m.loraLayers()[0][1];
    for (const n of ["a", "b"]) noGrad(() => init.normal_(layer.factors(n)[1], 0, 0.1));
    m.merge({ adapterNames: ["a"] });
    const before = layer.base_layer.weight.toBytes();
    let settled = false;
    const merging = m.mergeAsync({ adapterNames: ["b"] }).then(() => (settled = true));
    let reads = 0;
    let torn = 0;
    while (!settled) {
      // `settled` turns true in the same turn as the install, so a read here precedes it.
      const seen = m.model.stateDict()["fc.base_layer.weight"].toBytes();
      reads++;
      if (!seen.equals(before)) torn++;
      await new Promise((r) => setImmediate(r));
    }
    await merging;
    expect(reads).toBeGreaterThan(0);
    expect(torn).toBe(0);
    // The installed weight is W + Δa + Δb (the formula, computed here in float64).
    const [a, b] = [layer.deltaWeight("a"), layer.deltaWeight("b")];
    m.unmerge();
    const expected = layer.base_layer.weight
      .to({ dtype: "float64" })
      .add(a.to({ dtype: "float64" }))
      .add(b.to({ dtype: "float64" }));
    await m.mergeAsync({ adapterNames: ["a"] });
    await m.mergeAsync({ adapterNames: ["b"] });
    const diff = (layer.base_layer.weight.to({ dtype: "float64" }).sub(expected).abs().max().toArray() as Float64Array)[0];
    expect(diff).toBeLessThan(1e-4);
  });
});
