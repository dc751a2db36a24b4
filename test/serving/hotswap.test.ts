import * as fs from "fs";
import * as path from "path";
import { Tensor, lora, manualSeed, tensor } from "../../lib";
import { EmbFc, saveRandomAdapter } from "../helpers/lora-reference";
import { thrownBy } from "../helpers/errors";
import { makeTempDir } from "../helpers/temp";

const tmp = makeTempDir("tl-hotswap-");
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const ids = () =>
  tensor(
    [
      [1, 2, 3],
      [4, 5, 0],
    ],
    { dtype: "int64" },
  );

/** The serving model: the same base, adapters "slot" (from `first`) and "other". */
function servingModel(first: string): lora.LoraModel<EmbFc> {
  manualSeed(100);
  const lm = lora.loadAdapter(new EmbFc(), first, { adapterName: "slot" });
  lora.loadAdapter(lm, path.join(tmp, "other"), { adapterName: "other" });
  return lm;
}

/** The output of adapter `dir` loaded alone into a fresh model with the same base. */
function reference(dir: string): Tensor {
  manualSeed(100);
  const lm = lora.loadAdapter(new EmbFc(), dir);
  return lm.forward(ids()) as Tensor;
}

function run(lm: lora.LoraModel<EmbFc>, name: string): Tensor {
  lm.setAdapter(name);
  return lm.forward(ids()) as Tensor;
}

beforeAll(() => {
  saveRandomAdapter(path.join(tmp, "r4"), { r: 4, loraAlpha: 8, targetModules: ["emb", "fc"] }, 1);
  saveRandomAdapter(path.join(tmp, "r8"), { r: 8, loraAlpha: 4, targetModules: ["emb", "fc"], useRslora: true }, 2);
  saveRandomAdapter(path.join(tmp, "r2"), { r: 2, loraAlpha: 2, targetModules: ["emb", "fc"] }, 3);
  saveRandomAdapter(path.join(tmp, "r16"), { r: 16, loraAlpha: 16, targetModules: ["emb", "fc"] }, 4);
  saveRandomAdapter(path.join(tmp, "fc-only"), { r: 4, loraAlpha: 8, targetModules: ["fc"] }, 5);
  saveRandomAdapter(path.join(tmp, "other"), { r: 3, loraAlpha: 6, targetModules: ["emb", "fc"] }, 6);
});

describe("hot swap", () => {
  test("a reserved rank changes neither the output nor the saved files", () => {
    const lm = servingModel(path.join(tmp, "r4"));
    const before = run(lm, "slot");
    lora.reserveAdapterRank(lm, "slot", 8);
    expect(lm.loraLayers().every(([, l]) => lora.reservedRank(l, "slot") === 8)).toBe(true);
    expect(run(lm, "slot").equal(before)).toBe(true);
    const out = path.join(tmp, "saved-padded");
    lm.saveAdapter(out, { adapterName: "slot" });
    expect(reference(path.join(out, "slot")).allclose(before, { rtol: 0, atol: 1e-6 })).toBe(true);
  });

  test("swapping in higher and lower ranks: same layers and tensors, the loaded adapter's output, other adapters untouched", () => {
    const lm = servingModel(path.join(tmp, "r4"));
    lora.reserveAdapterRank(lm, "slot", 8);
    const layers = lm.loraLayers().map(([, l]) => l);
    const tensors = layers.flatMap((l) => l.factors("slot"));
    const other = run(lm, "other");
    for (const dir of ["r8", "r2", "r4"]) {
      const returned = lora.loadAdapter(lm, path.join(tmp, dir), { hotswap: "slot" });
      expect(returned).toBe(lm);
      expect(lm.loraLayers().map(([, l]) => l)).toEqual(layers);
      layers.flatMap((l) => l.factors("slot")).forEach((t, i) => expect(t).toBe(tensors[i]));
      expect(run(lm, "slot").allclose(reference(path.join(tmp, dir)), { rtol: 0, atol: 1e-6 })).toBe(true);
      expect(run(lm, "other").equal(other)).toBe(true);
    }
    // The swapped-in rank and config are what a save writes.
    lora.loadAdapter(lm, path.join(tmp, "r8"), { hotswap: "slot" });
    expect(lm.peftConfig.slot.r).toBe(8);
    const out = path.join(tmp, "saved-swapped");
    lm.saveAdapter(out, { adapterName: "slot" });
    expect(reference(path.join(out, "slot")).allclose(reference(path.join(tmp, "r8")), { rtol: 0, atol: 1e-6 })).toBe(true);
  });

  test("a rank above the reserved one is refused, naming the module, and changes nothing", () => {
    const lm = servingModel(path.join(tmp, "r4"));
    lora.reserveAdapterRank(lm, "slot", 8);
    const before = run(lm, "slot");
    const err = thrownBy(() => lora.loadAdapter(lm, path.join(tmp, "r16"), { hotswap: "slot" }));
    expect(err.name).toBe("ConfigError");
    expect(err.message).toMatch(/rank 16 on (emb|fc), above the rank 8 reserved for "slot"; reserveAdapterRank/);
    expect(run(lm, "slot").equal(before)).toBe(true);
    expect(lm.peftConfig.slot.r).toBe(4);
  });

  test("without a reserved rank, the same rank swaps and a higher one is refused", () => {
    const lm = servingModel(path.join(tmp, "r4"));
    expect(() => lora.loadAdapter(lm, path.join(tmp, "r2"), { hotswap: "slot" })).not.toThrow();
    expect(thrownBy(() => lora.loadAdapter(lm, path.join(tmp, "r8"), { hotswap: "slot" })).message).toMatch(/above the rank 4 reserved/);
  });

  test("other target modules are refused clearly", () => {
    const lm = servingModel(path.join(tmp, "r4"));
    const before = run(lm, "slot");
    const err = thrownBy(() => lora.loadAdapter(lm, path.join(tmp, "fc-only"), { hotswap: "slot" }));
    expect(err.name).toBe("ConfigError");
    expect(err.message).toMatch(/targets other modules than adapter "slot"; not emb\. .*load it as a new adapter/);
    expect(run(lm, "slot").equal(before)).toBe(true);
  });

  test("an unknown adapter, a plain module, a merged adapter", () => {
    const lm = servingModel(path.join(tmp, "r4"));
    expect(thrownBy(() => lora.loadAdapter(lm, path.join(tmp, "r2"), { hotswap: "nope" }))).toBeInstanceOf(RangeError);
    expect(thrownBy(() => lora.loadAdapter(new EmbFc(), path.join(tmp, "r2"), { hotswap: "slot" }))).toBeInstanceOf(TypeError);
    lm.setAdapter("slot");
    lm.merge();
    expect(thrownBy(() => lora.loadAdapter(lm, path.join(tmp, "r2"), { hotswap: "slot" })).message).toMatch(/merged into .*unmerge\(\) first/);
  });

  test("a swap waits for an async merge in flight: refused, nothing written; allowed once it settles", async () => {
    const lm = servingModel(path.join(tmp, "r4"));
    lm.setAdapter("other");
    const before = run(lm, "slot");
    const merging = lm.mergeAsync({ adapterNames: ["other"] });
    expect(thrownBy(() => lora.loadAdapter(lm, path.join(tmp, "r2"), { hotswap: "slot" })).message).toMatch(/async merge is in flight/);
    await merging;
    lm.unmerge();
    expect(run(lm, "slot").equal(before)).toBe(true);
    expect(() => lora.loadAdapter(lm, path.join(tmp, "r2"), { hotswap: "slot" })).not.toThrow();
  });

  test("a mixed batch after a swap uses the new weights for that adapter's rows only", () => {
    const lm = servingModel(path.join(tmp, "r4"));
    lora.reserveAdapterRank(lm, "slot", 8);
    lora.loadAdapter(lm, path.join(tmp, "r8"), { hotswap: "slot" });
    const mixed = lm.withAdapterNames(["slot", "other"], () => lm.forward(ids()) as Tensor);
    expect(mixed.narrow(0, 0, 1).allclose(reference(path.join(tmp, "r8")).narrow(0, 0, 1), { rtol: 0, atol: 1e-6 })).toBe(true);
    expect(mixed.narrow(0, 1, 1).allclose(run(lm, "other").narrow(0, 1, 1), { rtol: 0, atol: 1e-6 })).toBe(true);
  });
});
