/**
 * Loading refuses what it cannot honour, naming the field, file or key, and leaves the model
 * exactly as it was (parameter bytes compared before and after).
 */
import * as fs from "fs";
import * as path from "path";
import { ConfigError, FormatError, Tensor, lora, manualSeed, nn, randn } from "../../lib";
import { changedParameters, snapshot } from "../helpers/models";
import { cleanupTmp, ids, pythonStyleConfig, randomizeAdapter, seededModel, tmpDir, writePeftDir } from "./helpers";

afterAll(cleanupTmp);

function goodTensors(): Record<string, Tensor> {
  manualSeed(8);
  return {
    "base_model.model.emb.lora_embedding_A": randn([4, 12]),
    "base_model.model.emb.lora_embedding_B": randn([8, 4]),
    "base_model.model.fc1.lora_A.weight": randn([4, 8]),
    "base_model.model.fc1.lora_B.weight": randn([16, 4]),
  };
}

function adapterDir(tensors = goodTensors(), config: Record<string, unknown> = {}): string {
  const dir = tmpDir();
  writePeftDir(dir, tensors, pythonStyleConfig(config));
  return dir;
}

/** Loads into a plain model and into a LoraModel with an adapter; both must throw `pattern` and stay unchanged. */
function expectRefused(dir: string, kind: typeof FormatError | typeof ConfigError, pattern: RegExp): void {
  const plain = seededModel();
  const before = snapshot(plain);
  const thrown = (() => {
    try {
      lora.loadAdapter(plain, dir);
    } catch (err) {
      return err;
    }
    return undefined;
  })();
  expect(thrown).toBeInstanceOf(kind);
  expect((thrown as Error).message).toMatch(pattern);
  expect(changedParameters(before, snapshot(plain))).toEqual([]);
  expect(plain.fc1).toBeInstanceOf(nn.Linear);
  expect(plain.emb).toBeInstanceOf(nn.Embedding);

  const existing = lora.injectAdapter(seededModel(), { r: 2, targetModules: ["head"] }, "mine");
  randomizeAdapter(existing, "mine");
  const beforeLora = snapshot(existing);
  const out = existing.forward(ids());
  expect(() => lora.loadAdapter(existing, dir, { adapterName: "other" })).toThrow(pattern);
  expect(changedParameters(beforeLora, snapshot(existing))).toEqual([]);
  expect(existing.adapterNames).toEqual(["mine"]);
  expect(existing.loraLayers().map(([p]) => p)).toEqual(["head"]);
  expect(existing.forward(ids()).equal(out)).toBe(true);
}

describe("unsupported PEFT config fields are named, not ignored", () => {
  test.each([
    ["use_bdlora", { use_bdlora: { blocks: 2 } }, /use_bdlora = \{"blocks":2\} is not supported/],
    ["modules_to_save", { modules_to_save: ["classifier"] }, /modules_to_save = \["classifier"\] is not supported/],
    ["layers_to_transform", { layers_to_transform: [0, 1] }, /layers_to_transform = \[0,1\] is not supported/],
    ["bias", { bias: "all" }, /bias = "all" is not supported/],
    ["init_lora_weights", { init_lora_weights: "corda" }, /init_lora_weights = "corda" is not supported/],
    ["lora_bias", { lora_bias: true }, /lora_bias = true is not supported/],
    ["trainable_token_indices", { trainable_token_indices: [1, 2] }, /trainable_token_indices = \[1,2\] is not supported/],
    ["peft_type", { peft_type: "PREFIX_TUNING" }, /peft_type: expected "LORA", got the string "PREFIX_TUNING"/],
  ])("%s", (_field, config, pattern) => {
    expectRefused(adapterDir(goodTensors(), config), ConfigError, pattern);
  });

  test("several at once are all listed, with the file", () => {
    const dir = adapterDir(goodTensors(), { lora_bias: true, modules_to_save: ["x"], layers_pattern: "layers", layers_to_transform: 3 });
    expect(() => lora.loadAdapter(seededModel(), dir)).toThrow(
      new RegExp(
        `${path.join(dir, "adapter_config.json").replace(/[.]/g, "\\.")}: unsupported PEFT config: .*modules_to_save.*layers_to_transform.*layers_pattern.*lora_bias`,
      ),
    );
  });

  test("fields at their defaults, null or empty are accepted", () => {
    const dir = adapterDir(goodTensors(), {
      modules_to_save: [],
      layers_pattern: null,
      loftq_config: {},
      use_dora: false,
      target_parameters: [],
      lora_bias: false,
      eva_config: null,
    });
    expect(() => lora.loadAdapter(seededModel(), dir)).not.toThrow();
  });

  test("invalid values name PEFT's field", () => {
    expectRefused(adapterDir(goodTensors(), { r: 0 }), ConfigError, /adapter_config\.json: r: expected an integer >= 1, got 0/);
    expectRefused(adapterDir(goodTensors(), { lora_alpha: "big" }), ConfigError, /lora_alpha: expected a number, got the string "big"/);
    expectRefused(
      adapterDir(goodTensors(), { target_modules: ["nothing_like_this"] }),
      ConfigError,
      /target_modules: \["nothing_like_this"\] matches no Linear\/Embedding module/,
    );
  });
});

describe("bad files give clear errors and change nothing", () => {
  test("missing adapter_model.safetensors", () => {
    const dir = adapterDir();
    fs.rmSync(path.join(dir, "adapter_model.safetensors"));
    expectRefused(dir, FormatError, new RegExp(`${path.join(dir, "adapter_model.safetensors")}: missing`));
    fs.writeFileSync(path.join(dir, "adapter_model.bin"), "pickle");
    expect(() => lora.loadAdapter(seededModel(), dir)).toThrow(/saved as adapter_model\.bin, a pickle/);
  });

  test("missing adapter_config.json, missing directory, a file instead of a directory", () => {
    const dir = adapterDir();
    fs.rmSync(path.join(dir, "adapter_config.json"));
    expectRefused(dir, FormatError, /adapter_config\.json: missing/);
    expectRefused(path.join(dir, "nope"), FormatError, /nope: no such adapter directory/);
    expectRefused(path.join(dir, "adapter_model.safetensors"), FormatError, /adapter_model\.safetensors: not a directory/);
  });

  test("bad JSON names the file", () => {
    const dir = adapterDir();
    fs.writeFileSync(path.join(dir, "adapter_config.json"), '{"peft_type": "LORA", "r": 4,');
    expectRefused(dir, FormatError, /adapter_config\.json: not valid JSON/);
    fs.writeFileSync(path.join(dir, "adapter_config.json"), "[1, 2]");
    expectRefused(dir, FormatError, /adapter_config\.json: expected a JSON object of PEFT config fields, got an array/);
  });

  test("a corrupt weights file", () => {
    const dir = adapterDir();
    fs.writeFileSync(path.join(dir, "adapter_model.safetensors"), Buffer.from([1, 2, 3]));
    expectRefused(dir, FormatError, /adapter_model\.safetensors/);
  });

  test("wrong shapes name the key and both shapes", () => {
    const t = goodTensors();
    t["base_model.model.fc1.lora_B.weight"] = randn([15, 4]);
    expectRefused(adapterDir(t), FormatError, /base_model\.model\.fc1\.lora_B\.weight: shape \[15, 4\] in the file, \[16, 4\] expected/);
    // A rank that disagrees with the config is a shape mismatch too.
    expectRefused(adapterDir(goodTensors(), { r: 3 }), FormatError, /lora_embedding_A: shape \[4, 12\] in the file, \[3, 12\] expected/);
  });

  test("missing and unexpected keys are listed", () => {
    const t = goodTensors();
    delete t["base_model.model.fc1.lora_A.weight"];
    expectRefused(adapterDir(t), FormatError, /missing keys: base_model\.model\.fc1\.lora_A\.weight/);
    const extra = { ...goodTensors(), "base_model.model.head.lora_A.weight": randn([4, 16]) };
    expectRefused(adapterDir(extra), FormatError, /unexpected keys: base_model\.model\.head\.lora_A\.weight \(the config's target_modules does not select/);
    const named = Object.fromEntries(Object.entries(goodTensors()).map(([k, v]) => [k.replace(/\.lora_A\.weight$/, ".lora_A.default.weight"), v]));
    expect(() => lora.loadAdapter(seededModel(), adapterDir(named))).toThrow(/carry the adapter name; PEFT strips it/);
  });

  test("an integer factor is refused", () => {
    const t = goodTensors();
    t["base_model.model.fc1.lora_A.weight"] = randn([4, 8]).to({ dtype: "int32" });
    expectRefused(adapterDir(t), FormatError, /fc1\.lora_A\.weight: dtype int32, expected a floating dtype/);
  });

  test("a name already in use, a bad name or bad options are refused up front", () => {
    const dir = adapterDir();
    const existing = lora.injectAdapter(seededModel(), { r: 2, targetModules: ["head"] });
    expect(() => lora.loadAdapter(existing, dir)).toThrow(/already has an adapter called "default"/);
    expect(() => lora.loadAdapter(seededModel(), dir, { adapterName: "a.b" })).toThrow(TypeError);
    expect(() => lora.loadAdapter(seededModel(), dir, { isTrainable: "yes" as unknown as boolean })).toThrow(/isTrainable: expected a boolean/);
    expect(() => lora.loadAdapter({} as nn.Module, dir)).toThrow(/model: expected an nn\.Module or a LoraModel/);
  });

  test("the async twin refuses the same way", async () => {
    const t = goodTensors();
    t["base_model.model.fc1.lora_B.weight"] = randn([15, 4]);
    const model = seededModel();
    const before = snapshot(model);
    await expect(lora.loadAdapterAsync(model, adapterDir(t))).rejects.toThrow(/shape \[15, 4\] in the file/);
    await expect(lora.loadAdapterAsync(model, adapterDir(goodTensors(), { lora_bias: true }))).rejects.toThrow(/lora_bias/);
    // A DoRA config needs the magnitude vectors in the file.
    await expect(lora.loadAdapterAsync(model, adapterDir(goodTensors(), { use_dora: true }))).rejects.toThrow(/missing keys: .*lora_magnitude_vector/);
    expect(changedParameters(before, snapshot(model))).toEqual([]);
    expect(model.fc1).toBeInstanceOf(nn.Linear);
  });
});
