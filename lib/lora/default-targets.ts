/**
 * What PEFT fills in from a transformers model's config when the user does not say: the default
 * `target_modules` per `model_type` (PEFT's TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING),
 * and the `base_model_name_or_path` / `task_type` a saved adapter records. The model is read
 * duck-typed (a `config` with `model_type`), so LoRA needs no import of the model classes.
 */
import { ConfigError } from "../errors";
import { Module } from "../nn/module";
import { LoraConfig } from "./config";

/** PEFT's default LoRA targets for the architectures it knows, by `model_type` (in PEFT's order). */
export const DEFAULT_TARGET_MODULES: Readonly<Record<string, readonly string[]>> = {
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

/** The transformers config a model carries (`model.config`), if any. */
function hfConfigOf(model: Module): { model_type?: unknown; name_or_path?: unknown } | null {
  const config = (model as unknown as { config?: unknown }).config;
  return config !== null && typeof config === "object" ? (config as { model_type?: unknown; name_or_path?: unknown }) : null;
}

/** The `model_type` of a transformers-layout model, or null. */
export function modelTypeOfModel(model: Module): string | null {
  const type = hfConfigOf(model)?.model_type;
  return typeof type === "string" ? type : null;
}

/**
 * `config` with `targetModules` filled in from the model's `model_type` when it is omitted, as
 * PEFT does; unchanged when given. Omitted on a model whose type has no default: a ConfigError.
 */
export function withDefaultTargets(model: Module, config: LoraConfig): LoraConfig {
  if (config === null || typeof config !== "object" || config.targetModules !== undefined) return config;
  const type = modelTypeOfModel(model);
  // Own keys only: a model_type such as "constructor" must not find Object.prototype's members.
  const targets = type !== null && Object.hasOwn(DEFAULT_TARGET_MODULES, type) ? DEFAULT_TARGET_MODULES[type] : undefined;
  if (!targets) {
    const why =
      type === null ? "the model has no config.model_type to take PEFT's defaults from" : `PEFT has no default targets for model_type ${JSON.stringify(type)}`;
    throw new ConfigError(`LoraConfig.targetModules: expected a list of module names, a regex string, or "all-linear", got undefined (${why})`);
  }
  return { ...config, targetModules: [...targets] };
}

/** The fields a saved adapter of a transformers-layout model records: PEFT's `base_model_name_or_path` and `task_type`. */
export function peftModelFields(model: Module): { base_model_name_or_path?: string; task_type?: string } {
  const config = hfConfigOf(model);
  if (!config || typeof config.model_type !== "string") return {};
  const name = typeof config.name_or_path === "string" ? config.name_or_path : undefined;
  return { ...(name ? { base_model_name_or_path: name } : {}), task_type: "CAUSAL_LM" };
}
