/**
 * The default `targetModules` a config without them gets from the model's `config.model_type`,
 * checked per architecture against PEFT's own table, and the fields a saved adapter of a
 * transformers-layout model records.
 */
import { ConfigError, lora, nn } from "../../lib";

/** A module carrying a transformers-style `config`, as the model classes do. */
const withConfig = (config: unknown): nn.Module => Object.assign(new nn.Module(), { config });

/**
 * What PEFT selects, copied by hand from TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING in
 * peft/src/peft/utils/constants.py (all of its entries).
 */
const PEFT_LORA_TARGETS: Record<string, string[]> = {
  t5: ["q", "v"],
  mt5: ["q", "v"],
  bart: ["q_proj", "v_proj"],
  gpt2: ["c_attn"],
  bloom: ["query_key_value"],
  "blip-2": ["q", "v", "q_proj", "v_proj"],
  opt: ["q_proj", "v_proj"],
  gptj: ["q_proj", "v_proj"],
  gpt_neox: ["query_key_value"],
  gpt_neo: ["q_proj", "v_proj"],
  bert: ["query", "value"],
  roberta: ["query", "value"],
  "xlm-roberta": ["query", "value"],
  electra: ["query", "value"],
  "deberta-v2": ["query_proj", "value_proj"],
  deberta: ["in_proj"],
  layoutlm: ["query", "value"],
  llama: ["q_proj", "v_proj"],
  llama4: ["q_proj", "v_proj"],
  chatglm: ["query_key_value"],
  gpt_bigcode: ["c_attn"],
  mpt: ["Wqkv"],
  RefinedWebModel: ["query_key_value"],
  RefinedWeb: ["query_key_value"],
  falcon: ["query_key_value"],
  btlm: ["c_proj", "c_attn"],
  codegen: ["qkv_proj"],
  mistral: ["q_proj", "v_proj"],
  mixtral: ["q_proj", "v_proj"],
  stablelm: ["q_proj", "v_proj"],
  phi: ["q_proj", "v_proj", "fc1", "fc2"],
  gemma: ["q_proj", "v_proj"],
  gemma2: ["q_proj", "v_proj"],
  gemma3_text: ["q_proj", "v_proj"],
  qwen2: ["q_proj", "v_proj"],
  qwen3: ["q_proj", "v_proj"],
};

describe("withDefaultTargets fills in PEFT's default targetModules by model_type", () => {
  test.each(Object.entries(PEFT_LORA_TARGETS))("%s selects %j", (modelType, expected) => {
    const config = { r: 4, loraAlpha: 8 };
    const filled = lora.withDefaultTargets(withConfig({ model_type: modelType }), config);
    expect(filled).toEqual({ r: 4, loraAlpha: 8, targetModules: expected });
    // The caller's config is left as it was, and the table cannot be changed through the result.
    expect(config).toEqual({ r: 4, loraAlpha: 8 });
    (filled.targetModules as string[]).push("x");
    expect(lora.DEFAULT_TARGET_MODULES[modelType]).toEqual(expected);
  });

  test("the exported table holds exactly these architectures, with PEFT's targets", () => {
    expect(Object.fromEntries(Object.entries(lora.DEFAULT_TARGET_MODULES).map(([k, v]) => [k, [...v]]))).toEqual(PEFT_LORA_TARGETS);
  });

  test("targetModules given by the user are kept, even an empty list", () => {
    const model = withConfig({ model_type: "llama" });
    for (const targetModules of [["o_proj"], "all-linear", ".*q_proj", []]) {
      const config = { targetModules };
      expect(lora.withDefaultTargets(model, config)).toBe(config);
    }
  });

  test("a config that is not an object is passed through unchanged, for the config check to name", () => {
    const model = withConfig({ model_type: "gpt2" });
    expect(lora.withDefaultTargets(model, null as unknown as lora.LoraConfig)).toBeNull();
    expect(lora.withDefaultTargets(model, "c_attn" as unknown as lora.LoraConfig)).toBe("c_attn");
    expect(lora.withDefaultTargets(model, 3 as unknown as lora.LoraConfig)).toBe(3);
  });

  test("a model_type PEFT has no default for is a ConfigError naming it", () => {
    const call = () => lora.withDefaultTargets(withConfig({ model_type: "my_arch" }), { r: 2 });
    expect(call).toThrow(ConfigError);
    expect(call).toThrow(
      'LoraConfig.targetModules: expected a list of module names, a regex string, or "all-linear", got undefined (PEFT has no default targets for model_type "my_arch")',
    );
  });

  test("a model_type named like a member every object inherits has no defaults either", () => {
    for (const modelType of ["constructor", "toString", "__proto__", "hasOwnProperty"]) {
      const call = () => lora.withDefaultTargets(withConfig({ model_type: modelType }), { r: 2 });
      expect(call).toThrow(ConfigError);
      expect(call).toThrow(`(PEFT has no default targets for model_type ${JSON.stringify(modelType)})`);
    }
  });

  test("a model without config.model_type is a ConfigError saying so", () => {
    const message =
      'LoraConfig.targetModules: expected a list of module names, a regex string, or "all-linear", got undefined (the model has no config.model_type to take PEFT\'s defaults from)';
    for (const config of [undefined, null, {}, { model_type: 7 }, { model_type: null }, "gpt2"]) {
      const call = () => lora.withDefaultTargets(withConfig(config), {});
      expect(call).toThrow(ConfigError);
      expect(call).toThrow(message);
    }
    expect(() => lora.withDefaultTargets(new nn.Module(), {})).toThrow(message);
  });

  test("modelTypeOfModel reads a string config.model_type, and null otherwise", () => {
    expect(lora.modelTypeOfModel(withConfig({ model_type: "qwen2" }))).toBe("qwen2");
    expect(lora.modelTypeOfModel(withConfig({ model_type: 3 }))).toBeNull();
    expect(lora.modelTypeOfModel(withConfig(null))).toBeNull();
    expect(lora.modelTypeOfModel(new nn.Module())).toBeNull();
  });
});

describe("peftModelFields: what a saved adapter of a transformers-layout model records", () => {
  test("the model's name_or_path as base_model_name_or_path, and task_type CAUSAL_LM", () => {
    expect(lora.peftModelFields(withConfig({ model_type: "llama", name_or_path: "org/tiny-llama" }))).toEqual({
      base_model_name_or_path: "org/tiny-llama",
      task_type: "CAUSAL_LM",
    });
  });

  test("no name_or_path (absent, empty or not a string): task_type alone", () => {
    for (const name_or_path of [undefined, "", 42]) {
      expect(lora.peftModelFields(withConfig({ model_type: "gpt2", name_or_path }))).toEqual({ task_type: "CAUSAL_LM" });
    }
  });

  test("a model that is not transformers-layout records nothing", () => {
    expect(lora.peftModelFields(new nn.Module())).toEqual({});
    expect(lora.peftModelFields(withConfig(null))).toEqual({});
    expect(lora.peftModelFields(withConfig({ name_or_path: "org/x" }))).toEqual({});
    expect(lora.peftModelFields(withConfig({ model_type: 1, name_or_path: "org/x" }))).toEqual({});
  });
});
