/**
 * Every field of PEFT's LoraConfig that this library reads as "default only": a file that sets
 * one to anything but its default is refused, naming the field, the value and what would be
 * accepted; its default passes. Informational fields pass with any value and are not reported as
 * ignored; several problems are reported together.
 */
import { ConfigError, lora } from "../../lib";
import { thrownBy } from "../helpers/errors";

const FILE = "adapter/adapter_config.json";
const BASE = { peft_type: "LORA", r: 4, lora_alpha: 8, target_modules: ["fc"] };

/** Each field, a value it refuses, the values it accepts, and what its message says is expected. */
const DEFAULT_ONLY: [field: string, refused: unknown, accepted: unknown[], expected: string][] = [
  ["modules_to_save", ["lm_head"], [null, []], "null (extra fully trained modules are not supported)"],
  ["layers_to_transform", [0, 1], [null], "null (layer selection by index is not supported; list the modules in target_modules)"],
  ["layers_pattern", "layers", [null, [], {}], "null (layer selection by index is not supported)"],
  ["megatron_config", { tp: 2 }, [null], "null (Megatron parallel layers are not supported)"],
  ["trainable_token_indices", [5], [null], "null (trainable tokens are not supported)"],
  ["loftq_config", { loftq_bits: 4 }, [null, {}], "{} or null (LoftQ is not supported)"],
  ["eva_config", {}, [null], "null (EVA initialization is not supported)"],
  ["corda_config", {}, [null], "null (CorDA is not supported)"],
  ["lora_ga_config", {}, [null], "null (LoRA-GA is not supported)"],
  ["velora_config", {}, [null], "null (VeLoRA is not supported)"],
  ["alora_invocation_tokens", [1, 2], [null], "null (aLoRA is not supported)"],
  ["use_qalora", true, [false, null], "false (QALoRA is not supported)"],
  ["monteclora_config", {}, [null], "null (MonteCLoRA is not supported)"],
  ["layer_replication", [[0, 2]], [null], "null (layer replication is not supported)"],
  ["lora_bias", true, [false, null], "false (a bias on lora_B is not supported)"],
  ["target_parameters", ["w"], [null, []], "null (targeting bare parameters is not supported)"],
  ["use_bdlora", false, [null], "null (block-diagonal LoRA is not supported)"],
  ["arrow_config", {}, [null], "null (Arrow routing is not supported)"],
  ["kasa_config", {}, [null], "null (KaSA is not supported)"],
  ["ensure_weight_tying", true, [false, null], "false (adapter weight tying is not supported)"],
];

const INFORMATIONAL = [
  "task_type",
  "auto_mapping",
  "peft_version",
  "base_model_name_or_path",
  "revision",
  "inference_mode",
  "megatron_core",
  "qalora_group_size",
  "runtime_config",
];

describe("PEFT fields this library supports only at their defaults", () => {
  test.each(DEFAULT_ONLY)("%s = %j is refused by name, with what is expected", (field, refused, _accepted, expected) => {
    const err = thrownBy(() => lora.fromPeftConfigJson({ ...BASE, [field]: refused }, FILE));
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.message).toBe(`${FILE}: unsupported PEFT config: ${field} = ${JSON.stringify(refused)} is not supported; expected ${expected}`);
  });

  test.each(DEFAULT_ONLY)("%s at its default passes and is not reported as ignored", (field, _refused, accepted) => {
    for (const value of accepted) {
      const reading = lora.fromPeftConfigJson({ ...BASE, [field]: value }, FILE);
      expect(reading.ignoredFields).toEqual([]);
      expect(reading.config.r).toBe(4);
    }
  });

  test("every problem of a file is reported at once, in the order PEFT lists the fields", () => {
    const err = thrownBy(() => lora.fromPeftConfigJson({ ...BASE, lora_bias: true, modules_to_save: ["head"], bias: "all" }, FILE));
    expect(err.message).toBe(
      `${FILE}: unsupported PEFT config: modules_to_save = ["head"] is not supported; expected null (extra fully trained modules are not supported); ` +
        `lora_bias = true is not supported; expected false (a bias on lora_B is not supported); ` +
        `bias = "all" is not supported; expected "none" (bias terms stay frozen and are not saved)`,
    );
  });
});

describe("informational fields", () => {
  test.each(INFORMATIONAL)("%s passes with any value and is not reported as ignored", (field) => {
    for (const value of ["anything", 3, { a: 1 }, null]) {
      expect(lora.fromPeftConfigJson({ ...BASE, [field]: value }, FILE).ignoredFields).toEqual([]);
    }
  });

  test("inference_mode is read when it is a boolean, and null otherwise", () => {
    expect(lora.fromPeftConfigJson({ ...BASE, inference_mode: true }, FILE).inferenceMode).toBe(true);
    expect(lora.fromPeftConfigJson({ ...BASE, inference_mode: false }, FILE).inferenceMode).toBe(false);
    expect(lora.fromPeftConfigJson({ ...BASE, inference_mode: "true" }, FILE).inferenceMode).toBeNull();
    expect(lora.fromPeftConfigJson(BASE, FILE).inferenceMode).toBeNull();
  });

  test("every field this library maps is read, not reported as ignored", () => {
    const mapped = {
      ...BASE,
      lora_dropout: 0.1,
      exclude_modules: ["head"],
      use_rslora: true,
      fan_in_fan_out: true,
      bias: "none",
      init_lora_weights: "gaussian",
      rank_pattern: { fc: 2 },
      alpha_pattern: { fc: 4 },
      use_dora: true,
      torch_lora: { embedding_init: "normal", embedding_init_std: 0.5 },
    };
    const reading = lora.fromPeftConfigJson(mapped, FILE);
    expect(reading.ignoredFields).toEqual([]);
    expect(reading.config).toEqual({
      r: 4,
      loraAlpha: 8,
      loraDropout: 0.1,
      targetModules: ["fc"],
      excludeModules: ["head"],
      useRslora: true,
      fanInFanOut: true,
      initLoraWeights: "gaussian",
      bias: "none",
      rankPattern: { fc: 2 },
      alphaPattern: { fc: 4 },
      useDora: true,
      embeddingInit: "normal",
      embeddingInitStd: 0.5,
    });
  });

  test("fields no PEFT version has are reported as ignored, sorted", () => {
    expect(lora.fromPeftConfigJson({ ...BASE, zeta: 1, alpha_future: true }, FILE).ignoredFields).toEqual(["alpha_future", "zeta"]);
  });
});
