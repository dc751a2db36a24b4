/**
 * Hot swapping at its edges: the exact refusal for each bad argument or file (with the model's
 * weights and config unchanged afterwards), reserving ranks at and around the adapter's own, an
 * adapter on some layers only, and the factors after a swap compared with the new file's tensors.
 */
import * as fs from "fs";
import * as path from "path";
import { Tensor, io, lora, manualSeed, nn, tensor } from "../../lib";
import { EmbFc, saveRandomAdapter } from "../helpers/lora-reference";
import { thrownBy } from "../helpers/errors";
import { makeTempDir } from "../helpers/temp";

const tmp = makeTempDir("tl-hotswap-edges-");
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const ids = () => tensor([[1, 2, 3]], { dtype: "int64" });

/** The serving model: the same base, adapter "slot" from `dir` and adapter "other" on emb and fc. */
function servingModel(dir: string): lora.LoraModel<EmbFc> {
  manualSeed(100);
  const lm = lora.loadAdapter(new EmbFc(), path.join(tmp, dir), { adapterName: "slot" });
  lora.loadAdapter(lm, path.join(tmp, "other"), { adapterName: "other" });
  return lm;
}

/** Every tensor of the model's state and the config of "slot", as text (to see that a refusal changed nothing). */
function snapshot(lm: lora.LoraModel<EmbFc>): string {
  const state = Object.entries(lm.stateDict()).map(([k, t]) => `${k}=${t.dtype}${JSON.stringify(t.shape)}:${t.toBytes().toString("hex")}`);
  return JSON.stringify([state, lm.peftConfig.slot]);
}

function layerOf(lm: lora.LoraModel<EmbFc>, p: string): lora.LoraLinear | lora.LoraEmbedding {
  return lm.loraLayers().find(([q]) => q === p)![1] as lora.LoraLinear | lora.LoraEmbedding;
}

/** Copies adapter folder `from` to `to`, editing its config with `edit`. */
function copyAdapter(from: string, to: string, edit: (config: Record<string, unknown>) => void): void {
  const dst = path.join(tmp, to);
  fs.mkdirSync(dst, { recursive: true });
  for (const f of fs.readdirSync(path.join(tmp, from))) fs.copyFileSync(path.join(tmp, from, f), path.join(dst, f));
  const configPath = path.join(dst, "adapter_config.json");
  const config = JSON.parse(fs.readFileSync(configPath, "utf8")) as Record<string, unknown>;
  edit(config);
  fs.writeFileSync(configPath, JSON.stringify(config));
}

beforeAll(() => {
  saveRandomAdapter(path.join(tmp, "r4"), { r: 4, loraAlpha: 8, targetModules: ["emb", "fc"] }, 1);
  saveRandomAdapter(path.join(tmp, "r2"), { r: 2, loraAlpha: 2, targetModules: ["emb", "fc"] }, 3);
  saveRandomAdapter(path.join(tmp, "r1"), { r: 1, loraAlpha: 1, targetModules: ["emb", "fc"] }, 7);
  saveRandomAdapter(path.join(tmp, "fc-only"), { r: 4, loraAlpha: 8, targetModules: ["fc"] }, 5);
  saveRandomAdapter(path.join(tmp, "other"), { r: 3, loraAlpha: 6, targetModules: ["emb", "fc"] }, 6);
  // The same factors as r2, with a base weight of fc in the file too.
  const withBase = path.join(tmp, "with-base");
  fs.mkdirSync(withBase);
  fs.copyFileSync(path.join(tmp, "r2", "adapter_config.json"), path.join(withBase, "adapter_config.json"));
  const tensors = io.loadSafetensorsSync(path.join(tmp, "r2", "adapter_model.safetensors"));
  io.saveSafetensorsSync(path.join(withBase, "adapter_model.safetensors"), {
    ...tensors,
    "base_model.model.fc.base_layer.weight": new nn.Linear(4, 6).weight,
    "base_model.model.fc.base_layer.bias": new nn.Linear(4, 6).bias!,
  });
  // r2's adapter, whose config also lists a module this model does not have (PEFT tolerates it at load).
  copyAdapter("r2", "r2-extra-target", (c) => (c.target_modules = ["emb", "fc", "head"]));
});

describe("reserveAdapterRank", () => {
  test("refuses what is not a LoraModel, an unknown adapter, and ranks that are not positive integers", () => {
    const lm = servingModel("r4");
    const before = snapshot(lm);
    const cases: [() => unknown, typeof Error, string][] = [
      [
        () => lora.reserveAdapterRank(new EmbFc() as never, "slot", 8),
        TypeError,
        "model: expected a LoraModel holding the adapter to reserveAdapterRank, got a EmbFc",
      ],
      [() => lora.reserveAdapterRank(lm, "nope", 8), RangeError, 'hotswap: no adapter the string "nope" (adapters: slot, other)'],
      [() => lora.reserveAdapterRank(lm, "slot", 0), RangeError, "maxRank: expected a positive integer, got 0"],
      [() => lora.reserveAdapterRank(lm, "slot", 6.5), RangeError, "maxRank: expected a positive integer, got 6.5"],
      [() => lora.reserveAdapterRank(lm, "slot", 2), RangeError, 'maxRank: 2 is below the rank 4 adapter "slot" already has in emb'],
    ];
    for (const [fn, kind, message] of cases) {
      const err = thrownBy(fn);
      expect(err).toBeInstanceOf(kind);
      expect(err.message).toBe(message);
      expect(snapshot(lm)).toBe(before);
    }
  });

  test("a rank equal to the adapter's own is a no-op: the same tensors stay in place", () => {
    const lm = servingModel("r4");
    const tensors = lm.loraLayers().flatMap(([, l]) => l.factors("slot"));
    const before = snapshot(lm);
    lora.reserveAdapterRank(lm, "slot", 4);
    lm.loraLayers()
      .flatMap(([, l]) => l.factors("slot"))
      .forEach((t, i) => expect(t).toBe(tensors[i]));
    expect(snapshot(lm)).toBe(before);
  });

  test("rank 1 may be reserved for a rank-1 adapter", () => {
    const lm = servingModel("r1");
    expect(() => lora.reserveAdapterRank(lm, "slot", 1)).not.toThrow();
    expect(lm.loraLayers().every(([, l]) => lora.reservedRank(l, "slot") === 1)).toBe(true);
  });

  test("padding keeps the factors' dtype, values and requiresGrad, zero beyond the rank", () => {
    manualSeed(100);
    const lm = lora.loadAdapter(new EmbFc().to({ dtype: "float64" }), path.join(tmp, "r2"), { adapterName: "slot" });
    const old = lm.loraLayers().map(([p, l]) => [p, l.factors("slot").map((f) => f.clone())] as const);
    lora.reserveAdapterRank(lm, "slot", 5);
    for (const [p, [A0, B0]] of old) {
      const [A, B] = layerOf(lm as never, p).factors("slot");
      expect([A.dtype, B.dtype]).toEqual(["float64", "float64"]);
      expect([A.shape, B.shape]).toEqual([
        [5, A0.shape[1]],
        [B0.shape[0], 5],
      ]);
      expect([A.requiresGrad, B.requiresGrad]).toEqual([A0.requiresGrad, B0.requiresGrad]);
      expect(A.narrow(0, 0, 2).equal(A0)).toBe(true);
      expect(B.narrow(1, 0, 2).equal(B0)).toBe(true);
      expect(A.narrow(0, 2, 3).abs().sum().item()).toBe(0);
      expect(B.narrow(1, 2, 3).abs().sum().item()).toBe(0);
    }
  });

  test("an adapter on some layers only: only those layers are padded", () => {
    manualSeed(100);
    const lm = lora.loadAdapter(new EmbFc(), path.join(tmp, "fc-only"), { adapterName: "slot" });
    lora.loadAdapter(lm, path.join(tmp, "other"), { adapterName: "other" });
    lora.reserveAdapterRank(lm, "slot", 6);
    expect(layerOf(lm, "emb").adapterNames).toEqual(["other"]);
    expect(lora.reservedRank(layerOf(lm, "fc"), "slot")).toBe(6);
    expect(lora.reservedRank(layerOf(lm, "emb"), "other")).toBe(3);
  });
});

describe("hotswapAdapter", () => {
  test("refuses what is not a LoraModel and an unknown adapter, by name", () => {
    const lm = servingModel("r4");
    const before = snapshot(lm);
    const plain = thrownBy(() => lora.hotswapAdapter(new EmbFc(), path.join(tmp, "r2"), "slot"));
    expect(plain).toBeInstanceOf(TypeError);
    expect(plain.message).toBe("model: expected a LoraModel holding the adapter to hotswap, got a EmbFc");
    const unknown = thrownBy(() => lora.hotswapAdapter(lm, path.join(tmp, "r2"), "nope"));
    expect(unknown).toBeInstanceOf(RangeError);
    expect(unknown.message).toBe('hotswap: no adapter the string "nope" (adapters: slot, other)');
    expect(snapshot(lm)).toBe(before);
  });

  test("an adapter that targets more modules than the slot is refused, naming them", () => {
    manualSeed(100);
    const lm = lora.loadAdapter(new EmbFc(), path.join(tmp, "fc-only"), { adapterName: "slot" });
    const before = snapshot(lm);
    const err = thrownBy(() => lora.hotswapAdapter(lm, path.join(tmp, "r2"), "slot"));
    expect(err.name).toBe("ConfigError");
    expect(err.message).toBe(
      `hotswap: the adapter in ${path.join(tmp, "r2")} targets other modules than adapter "slot"; also emb. Hot swapping keeps the injected layers as they are: load it as a new adapter instead`,
    );
    expect(snapshot(lm)).toBe(before);
  });

  test("an adapter that targets fewer modules is refused, naming the missing ones", () => {
    const lm = servingModel("r4");
    const before = snapshot(lm);
    const err = thrownBy(() => lora.hotswapAdapter(lm, path.join(tmp, "fc-only"), "slot"));
    expect(err.message).toBe(
      `hotswap: the adapter in ${path.join(tmp, "fc-only")} targets other modules than adapter "slot"; not emb. Hot swapping keeps the injected layers as they are: load it as a new adapter instead`,
    );
    expect(snapshot(lm)).toBe(before);
  });

  test("several modules more or fewer are all named, comma-separated", () => {
    const stack = () => {
      manualSeed(200);
      return new nn.Sequential(new nn.Linear(4, 4), new nn.Linear(4, 4), new nn.Linear(4, 4));
    };
    const save = (dir: string, targetModules: string[]) => lora.injectAdapter(stack(), { r: 2, targetModules }).saveAdapter(path.join(tmp, dir));
    save("stack-all", ["0", "1", "2"]);
    save("stack-last", ["2"]);
    const tail = ". Hot swapping keeps the injected layers as they are: load it as a new adapter instead";
    const onLast = lora.loadAdapter(stack(), path.join(tmp, "stack-last"), { adapterName: "slot" });
    expect(thrownBy(() => lora.hotswapAdapter(onLast, path.join(tmp, "stack-all"), "slot")).message).toBe(
      `hotswap: the adapter in ${path.join(tmp, "stack-all")} targets other modules than adapter "slot"; also 0, 1${tail}`,
    );
    const onAll = lora.loadAdapter(stack(), path.join(tmp, "stack-all"), { adapterName: "slot" });
    expect(thrownBy(() => lora.hotswapAdapter(onAll, path.join(tmp, "stack-last"), "slot")).message).toBe(
      `hotswap: the adapter in ${path.join(tmp, "stack-last")} targets other modules than adapter "slot"; not 0, 1${tail}`,
    );
  });

  test("a file that also holds base weights is refused, naming them, and nothing is written", () => {
    const lm = servingModel("r4");
    const before = snapshot(lm);
    const err = thrownBy(() => lora.hotswapAdapter(lm, path.join(tmp, "with-base"), "slot"));
    expect(err.name).toBe("ConfigError");
    expect(err.message).toBe(
      `hotswap: ${path.join(tmp, "with-base", "adapter_model.safetensors")} also holds base weights (base_model.model.fc.base_layer.weight, base_model.model.fc.base_layer.bias), which would change every adapter's output`,
    );
    expect(snapshot(lm)).toBe(before);
  });

  test("a config listing a module the model lacks swaps as a load would (PEFT tolerates it)", () => {
    const lm = servingModel("r4");
    lora.hotswapAdapter(lm, path.join(tmp, "r2-extra-target"), "slot");
    expect(lm.peftConfig.slot.r).toBe(2);
  });

  test("the factors after a swap are the new file's, zero-padded to the reserved rank; other adapters untouched", () => {
    const lm = servingModel("r4");
    lora.reserveAdapterRank(lm, "slot", 6);
    const other = lm.loraLayers().map(([, l]) => l.factors("other").map((f) => f.toBytes().toString("hex")));
    lora.hotswapAdapter(lm, path.join(tmp, "r2"), "slot");
    const file = io.loadSafetensorsSync(path.join(tmp, "r2", "adapter_model.safetensors"));
    const fileFactor = (key: string): Tensor => file[Object.keys(file).find((k) => k.endsWith(key))!];
    for (const [p, l] of lm.loraLayers()) {
      const [A, B] = l.factors("slot");
      const [aKey, bKey] = p === "emb" ? ["emb.lora_embedding_A", "emb.lora_embedding_B"] : ["fc.lora_A.weight", "fc.lora_B.weight"];
      expect(A.narrow(0, 0, 2).equal(fileFactor(aKey))).toBe(true);
      expect(B.narrow(1, 0, 2).equal(fileFactor(bKey))).toBe(true);
      expect(A.narrow(0, 2, 4).abs().sum().item()).toBe(0);
      expect(B.narrow(1, 2, 4).abs().sum().item()).toBe(0);
    }
    expect(lm.loraLayers().map(([, l]) => l.factors("other").map((f) => f.toBytes().toString("hex")))).toEqual(other);
    // The output is the delta of the new factors at the new scale (alpha 2 / r 2 = 1), by plain tensor ops.
    lm.setAdapter("slot");
    const emb = layerOf(lm, "emb") as lora.LoraEmbedding;
    const fc = layerOf(lm, "fc") as lora.LoraLinear;
    const x = ids().reshape([-1]);
    const [eA, eB] = [fileFactor("emb.lora_embedding_A"), fileFactor("emb.lora_embedding_B")];
    const hidden = emb.base_layer.weight.indexSelect(0, x).add(eA.t().indexSelect(0, x).matmul(eB.t()));
    const [fA, fB] = [fileFactor("fc.lora_A.weight"), fileFactor("fc.lora_B.weight")];
    const expected = hidden.matmul(fc.base_layer.weight.t()).add(fc.base_layer.bias!).add(hidden.matmul(fA.t()).matmul(fB.t()));
    expect((lm.forward(ids()) as Tensor).reshape([-1, 6]).allclose(expected, { rtol: 1e-5, atol: 1e-5 })).toBe(true);
  });
});
