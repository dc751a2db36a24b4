/**
 * What `adapter_config.json` holds when an adapter is saved: every field of PEFT's LoraConfig, at
 * PEFT's defaults where this library has no equivalent, compared with a PEFT-layout object (and
 * text) written out here by hand; the JSON laid out as Python's `json.dumps(indent=2,
 * sort_keys=True)` lays it out; and a refused save leaving the old files byte for byte.
 */
import * as fs from "fs";
import * as path from "path";
import { lora } from "../../lib";
import { messageOf } from "../helpers/errors";
import { PEFT_FIXED_FIELDS, cleanupTmp, seededModel, tmpDir } from "./helpers";

afterAll(cleanupTmp);

describe("toPeftConfigJson", () => {
  test("a config with every field set is written as PEFT's fields, with ours under torch_lora", () => {
    const resolved = lora.resolveLoraConfig({
      r: 6,
      loraAlpha: 12,
      loraDropout: 0.25,
      targetModules: ["fc1", "head"],
      excludeModules: ["emb"],
      useRslora: true,
      initLoraWeights: "gaussian",
      rankPattern: { head: 2 },
      alphaPattern: { fc1: 3 },
      useDora: true,
      embeddingInit: "b-normal",
      embeddingInitStd: 0.125,
    });
    expect(lora.toPeftConfigJson(resolved, true, false)).toStrictEqual({
      ...PEFT_FIXED_FIELDS,
      alpha_pattern: { fc1: 3 },
      exclude_modules: ["emb"],
      fan_in_fan_out: true,
      inference_mode: false,
      init_lora_weights: "gaussian",
      lora_alpha: 12,
      lora_dropout: 0.25,
      r: 6,
      rank_pattern: { head: 2 },
      target_modules: ["fc1", "head"],
      use_dora: true,
      use_rslora: true,
      torch_lora: { embedding_init: "b-normal", embedding_init_std: 0.125 },
    });
  });

  test("a config at its defaults: no exclude_modules is null, inference_mode is true unless told", () => {
    const resolved = lora.resolveLoraConfig({ targetModules: "fc1|head" });
    expect(lora.toPeftConfigJson(resolved, false)).toStrictEqual({
      ...PEFT_FIXED_FIELDS,
      alpha_pattern: {},
      exclude_modules: null,
      fan_in_fan_out: false,
      inference_mode: true,
      init_lora_weights: true,
      lora_alpha: 8,
      lora_dropout: 0,
      r: 8,
      rank_pattern: {},
      target_modules: "fc1|head",
      use_dora: false,
      use_rslora: false,
      torch_lora: { embedding_init: "a-normal", embedding_init_std: 1 },
    });
    expect(lora.toPeftConfigJson(resolved, false, true).inference_mode).toBe(true);
    expect(lora.toPeftConfigJson({ ...resolved, excludeModules: "emb" }, false).exclude_modules).toBe("emb");
  });

  test("the object shares nothing with the config: editing it leaves the config as it was", () => {
    const resolved = lora.resolveLoraConfig({ targetModules: ["fc1"], excludeModules: ["head"], rankPattern: { fc1: 2 }, alphaPattern: { fc1: 4 } });
    const json = lora.toPeftConfigJson(resolved, false);
    (json.target_modules as string[]).push("x");
    (json.exclude_modules as string[]).push("y");
    (json.rank_pattern as Record<string, number>).fc1 = 9;
    (json.alpha_pattern as Record<string, number>).z = 9;
    expect(resolved.targetModules).toEqual(["fc1"]);
    expect(resolved.excludeModules).toEqual(["head"]);
    expect(resolved.rankPattern).toEqual({ fc1: 2 });
    expect(resolved.alphaPattern).toEqual({ fc1: 4 });
  });
});

describe("adapter_config.json as saveAdapter writes it", () => {
  test("the text is PEFT's json.dumps(indent=2, sort_keys=True) of the fields, keys sorted at every level", () => {
    const lm = lora.injectAdapter(seededModel(), {
      r: 4,
      loraAlpha: 16,
      loraDropout: 0.5,
      targetModules: ["head", "fc1"],
      // Given out of order: the file sorts the keys of nested objects too.
      rankPattern: { head: 2, fc1: 3 },
      alphaPattern: { head: 5, emb: 7 },
      embeddingInitStd: 0.5,
    });
    const dir = tmpDir();
    lm.saveAdapter(dir);
    const expected = [
      "{",
      '  "alora_invocation_tokens": null,',
      '  "alpha_pattern": {',
      '    "emb": 7,',
      '    "head": 5',
      "  },",
      '  "arrow_config": null,',
      '  "auto_mapping": null,',
      '  "base_model_name_or_path": null,',
      '  "bias": "none",',
      '  "corda_config": null,',
      '  "ensure_weight_tying": false,',
      '  "eva_config": null,',
      '  "exclude_modules": null,',
      '  "fan_in_fan_out": false,',
      '  "inference_mode": true,',
      '  "init_lora_weights": true,',
      '  "kasa_config": null,',
      '  "layer_replication": null,',
      '  "layers_pattern": null,',
      '  "layers_to_transform": null,',
      '  "loftq_config": {},',
      '  "lora_alpha": 16,',
      '  "lora_bias": false,',
      '  "lora_dropout": 0.5,',
      '  "lora_ga_config": null,',
      '  "megatron_config": null,',
      '  "megatron_core": "megatron.core",',
      '  "modules_to_save": null,',
      '  "monteclora_config": null,',
      '  "peft_type": "LORA",',
      '  "qalora_group_size": 16,',
      '  "r": 4,',
      '  "rank_pattern": {',
      '    "fc1": 3,',
      '    "head": 2',
      "  },",
      '  "revision": null,',
      '  "target_modules": [',
      '    "head",',
      '    "fc1"',
      "  ],",
      '  "target_parameters": null,',
      '  "task_type": null,',
      '  "torch_lora": {',
      '    "embedding_init": "a-normal",',
      '    "embedding_init_std": 0.5',
      "  },",
      '  "trainable_token_indices": null,',
      '  "use_bdlora": null,',
      '  "use_dora": false,',
      '  "use_qalora": false,',
      '  "use_rslora": false,',
      '  "velora_config": null',
      "}",
    ].join("\n");
    expect(fs.readFileSync(path.join(dir, lora.ADAPTER_CONFIG_NAME), "utf8")).toBe(expected);
  });

  test("the file reads back as the config that was saved", () => {
    const config: lora.LoraConfig = {
      r: 3,
      loraAlpha: 5,
      targetModules: ["fc1", "emb"],
      excludeModules: "head",
      initLoraWeights: false,
      useRslora: true,
      rankPattern: { emb: 2 },
      embeddingInit: "b-normal",
      embeddingInitStd: 0.25,
    };
    const lm = lora.injectAdapter(seededModel(), config);
    const dir = tmpDir();
    lm.saveAdapter(dir);
    const reading = lora.readAdapterConfig(path.join(dir, lora.ADAPTER_CONFIG_NAME));
    expect(reading.resolved).toStrictEqual(lora.resolveLoraConfig(config));
    expect(reading.ignoredFields).toEqual([]);
    expect(reading.inferenceMode).toBe(true);
  });

  test("a refused save leaves the adapter already in the folder byte for byte, and writes nothing else", () => {
    const lm = lora.injectAdapter(seededModel(), { r: 2, targetModules: ["fc1"] });
    const parent = tmpDir();
    const dir = path.join(parent, "adapter");
    lm.saveAdapter(dir);
    const before = new Map(fs.readdirSync(dir).map((f) => [f, fs.readFileSync(path.join(dir, f))]));
    lm.addAdapter("other", { r: 3, targetModules: ["head"] });
    expect(messageOf(() => lm.saveAdapter(dir, { adapterName: [] }), TypeError)).toBe(
      "adapterName: expected an adapter name or a non-empty list of names, got an array of length 0",
    );
    expect(() => lm.saveAdapter(dir, { adapterName: ["default", "missing"] })).toThrow(/adapterName: no adapter the string "missing"/);
    expect(fs.readdirSync(parent)).toEqual(["adapter"]);
    expect(fs.readdirSync(dir).sort()).toEqual([lora.ADAPTER_CONFIG_NAME, lora.ADAPTER_WEIGHTS_NAME]);
    for (const [f, bytes] of before) expect(fs.readFileSync(path.join(dir, f)).equals(bytes)).toBe(true);
  });
});
