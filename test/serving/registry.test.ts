import * as fs from "fs";
import * as path from "path";
import { Tensor, init, lora, manualSeed, noGrad, tensor } from "../../lib";
import { EmbFc } from "../helpers/lora-reference";
import { thrownBy } from "../helpers/errors";
import { makeTempDir } from "../helpers/temp";

const root = makeTempDir("tl-registry-");
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const NAMES = ["a", "b", "c", "d"];
const ids = () => tensor([[1, 2, 3]], { dtype: "int64" });
/** r = 4 on EmbFc in fp32: emb A (4, 10) + B (4, 4), fc A (4, 4) + B (6, 4) = 96 floats. */
const BYTES = (4 * 10 + 4 * 4 + 4 * 4 + 6 * 4) * 4;

beforeAll(() => {
  NAMES.forEach((name, k) => {
    manualSeed(7);
    const lm = lora.injectAdapter(new EmbFc(), { r: 4, loraAlpha: 8, targetModules: ["emb", "fc"] });
    manualSeed(10 + k);
    for (const [, l] of lm.loraLayers()) for (const f of l.factors("default")) noGrad(() => init.normal_(f, 0, 0.3));
    lm.saveAdapter(path.join(root, name));
  });
  fs.mkdirSync(path.join(root, "not-an-adapter"));
});

function base(): EmbFc {
  manualSeed(7);
  return new EmbFc();
}

/** Adapter `name` loaded alone, the plain way. */
function reference(name: string): Tensor {
  return lora.loadAdapter(base(), path.join(root, name)).forward(ids()) as Tensor;
}

describe("AdapterRegistry", () => {
  test("lists the adapter folders, loads lazily and reports memory per adapter", () => {
    const reg = new lora.AdapterRegistry(base(), root);
    expect(reg.available()).toEqual(NAMES);
    expect(reg.loaded).toEqual([]);
    expect(reg.model).toBeNull();
    const out = reg.use(["b"], (m) => {
      m = m!;
      m.setAdapter("b");
      return m.forward(ids()) as Tensor;
    });
    expect(out.equal(reference("b"))).toBe(true);
    expect(reg.loaded).toEqual(["b"]);
    expect(reg.memory()).toEqual({ b: BYTES });
    expect(reg.totalBytes).toBe(BYTES);
  });

  test("evicts the least recently used adapters beyond the budget", () => {
    const reg = new lora.AdapterRegistry(base(), root, { memoryBudget: 2 * BYTES });
    reg.use(["a"], () => 0);
    reg.use(["b"], () => 0);
    reg.use(["a"], () => 0); // a is now the most recently used
    reg.use(["c"], () => 0);
    expect(reg.loaded).toEqual(["a", "c"]);
    expect(reg.model!.adapterNames.sort()).toEqual(["a", "c"]);
    // An evicted adapter comes back with its own weights.
    const out = reg.use(["b"], (m) => (m!.setAdapter("b"), m!.forward(ids()) as Tensor));
    expect(out.equal(reference("b"))).toBe(true);
    expect(reg.loaded).toEqual(["c", "b"]);
  });

  test("never evicts an adapter a batch in flight holds", async () => {
    const reg = new lora.AdapterRegistry(base(), root, { memoryBudget: BYTES });
    reg.acquire(["a", "b"]);
    expect(reg.loaded).toEqual(["a", "b"]); // above the budget: both are held
    let resolveBatch!: () => void;
    const batch = reg.use(["c"], async (m) => {
      await new Promise<void>((r) => (resolveBatch = r));
      return m!.withAdapterNames(["c"], () => m!.forward(ids()) as Tensor);
    });
    reg.release(["a", "b"]);
    expect(reg.loaded).toEqual(["c"]); // c is held by the pending batch
    // While both are held, both stay; once d's batch ends, d is the one over the budget.
    reg.use(["d"], () => expect(reg.loaded).toEqual(["c", "d"]));
    expect(reg.loaded).toEqual(["c"]);
    resolveBatch();
    expect((await batch).equal(reference("c"))).toBe(true);
    expect(reg.loaded).toEqual(["c"]);
  });

  test("asynchronous loads: concurrent requests share one load per adapter, in any order", async () => {
    const reg = new lora.AdapterRegistry(base(), root, { memoryBudget: 3 * BYTES });
    const outputs = await Promise.all(
      [["a", "b"], ["b"], ["c", "a"], ["__base__", "d"]].map((names) =>
        reg.useAsync(names, (m) =>
          m!.withAdapterNames(
            names,
            () =>
              m!.forward(
                tensor(
                  names.map(() => [1, 2, 3]),
                  { dtype: "int64" },
                ),
              ) as Tensor,
          ),
        ),
      ),
    );
    expect(outputs[1].equal(reference("b"))).toBe(true);
    expect(outputs[2].narrow(0, 0, 1).equal(reference("c"))).toBe(true);
    expect(outputs[3].narrow(0, 1, 1).equal(reference("d"))).toBe(true);
    expect(reg.model!.adapterNames.length).toBeLessThanOrEqual(3);
    expect(reg.totalBytes).toBeLessThanOrEqual(3 * BYTES);
    // A sync acquire while loads run is refused rather than racing them.
    const pending = reg.acquireAsync(["a", "b", "c"]);
    expect(thrownBy(() => reg.acquire(["a"])).message).toMatch(/asynchronous loads are in flight/);
    await pending;
    reg.release(["a", "b", "c"]);
  });

  test("a load that fails releases what the call held, and later loads still run", async () => {
    const other = makeTempDir("tl-registry-broken-");
    try {
      fs.cpSync(path.join(root, "a"), path.join(other, "a"), { recursive: true });
      fs.cpSync(path.join(root, "b"), path.join(other, "broken"), { recursive: true });
      fs.writeFileSync(path.join(other, "broken", "adapter_model.safetensors"), "not safetensors");
      const reg = new lora.AdapterRegistry(base(), other);
      await expect(reg.acquireAsync(["a", "broken"])).rejects.toThrow(/adapter_model\.safetensors/);
      expect(thrownBy(() => reg.release(["a"])).name).toBe("StateError"); // not held any more
      expect(reg.loaded).toEqual(["a"]);
      const out = await reg.useAsync(["a"], (m) => (m!.setAdapter("a"), m!.forward(ids()) as Tensor));
      expect(out.equal(reference("a"))).toBe(true);
    } finally {
      fs.rmSync(other, { recursive: true, force: true });
    }
  });

  test("an unknown adapter, an unbalanced release, bad arguments", () => {
    const reg = new lora.AdapterRegistry(base(), root);
    const err = thrownBy(() => reg.acquire(["zz"]));
    expect(err).toBeInstanceOf(RangeError);
    expect(err.message).toMatch(/^names: no adapter the string "zz" in .* \(adapters: a, b, c, d\)$/);
    expect(thrownBy(() => reg.acquire(["not-an-adapter"]))).toBeInstanceOf(RangeError);
    expect(thrownBy(() => reg.acquire(["../a"]))).toBeInstanceOf(TypeError);
    expect(reg.loaded).toEqual([]);
    expect(thrownBy(() => reg.release(["a"])).name).toBe("StateError");
    expect(thrownBy(() => new lora.AdapterRegistry(base(), path.join(root, "missing")))).toBeInstanceOf(TypeError);
    expect(thrownBy(() => new lora.AdapterRegistry(base(), root, { memoryBudget: -1 }))).toBeInstanceOf(RangeError);
  });
});
