/** Shared pieces of the PEFT-format tests: temp dirs, a seeded model, random adapters, PEFT-style files. */
import * as fs from "fs";
import * as path from "path";
import { Tensor, init, io, lora, manualSeed, nn, tensor } from "../../lib";
import { TinyModel } from "../helpers/models";
import { tempDirs } from "../helpers/temp";

const dirs = tempDirs("torch-lora-peft-");
/** A fresh temporary directory, removed by {@link cleanupTmp}. */
export const tmpDir = dirs.make;
/** Removes every directory {@link tmpDir} made. */
export const cleanupTmp = dirs.cleanup;

/** The same base weights every time for the same seed. */
export function seededModel(seed = 11): TinyModel {
  manualSeed(seed);
  return new TinyModel({ vocab: 12, dim: 8, hidden: 16 });
}

export const ids = (): Tensor =>
  tensor(
    [
      [1, 2, 0, 3],
      [4, 11, 5, 1],
    ],
    { dtype: "int64" },
  );

/** Gives every factor of `name` random values, so the adapter changes the output. */
export function randomizeAdapter(model: lora.LoraModel, name = "default"): void {
  for (const [, layer] of model.loraLayers()) {
    if (!layer.adapterNames.includes(name)) continue;
    for (const t of layer.factors(name)) init.normal_(t, 0, 0.5);
  }
}

/** The fields PEFT's LoraConfig.to_dict() writes, at PEFT's defaults, for what this library cannot express. */
export const PEFT_FIXED_FIELDS = {
  alora_invocation_tokens: null,
  arrow_config: null,
  auto_mapping: null,
  base_model_name_or_path: null,
  bias: "none",
  corda_config: null,
  ensure_weight_tying: false,
  eva_config: null,
  kasa_config: null,
  layer_replication: null,
  layers_pattern: null,
  layers_to_transform: null,
  loftq_config: {},
  lora_bias: false,
  lora_ga_config: null,
  megatron_config: null,
  megatron_core: "megatron.core",
  modules_to_save: null,
  monteclora_config: null,
  peft_type: "LORA",
  qalora_group_size: 16,
  revision: null,
  target_parameters: null,
  task_type: null,
  trainable_token_indices: null,
  use_bdlora: null,
  use_qalora: false,
  velora_config: null,
};

/**
 * Every field Python PEFT's LoraConfig writes to adapter_config.json (to_dict without
 * runtime_config), as `json.dumps(indent=2, sort_keys=True)` lays them out.
 */
export function pythonStyleConfig(fields: Record<string, unknown>): string {
  const all: Record<string, unknown> = {
    ...PEFT_FIXED_FIELDS,
    alpha_pattern: {},
    base_model_name_or_path: "tiny/base-model",
    exclude_modules: null,
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    lora_alpha: 16,
    lora_dropout: 0.05,
    peft_version: "0.17.2.dev0@abcdef",
    r: 4,
    rank_pattern: {},
    target_modules: ["fc1", "emb"],
    task_type: "CAUSAL_LM",
    use_dora: false,
    use_rslora: false,
    ...fields,
  };
  const sorted = Object.fromEntries(
    Object.keys(all)
      .sort()
      .map((k) => [k, all[k]]),
  );
  // Python writes floats with a decimal point; JSON readers must accept that layout.
  return JSON.stringify(sorted, null, 2).replace(/"lora_dropout": 0\b(?!\.)/, '"lora_dropout": 0.0');
}

/** Writes an adapter directory as PEFT lays it out. */
export function writePeftDir(dir: string, tensors: Record<string, Tensor>, configText: string): void {
  fs.mkdirSync(dir, { recursive: true });
  io.saveSafetensorsSync(path.join(dir, "adapter_model.safetensors"), tensors, { format: "pt" });
  fs.writeFileSync(path.join(dir, "adapter_config.json"), configText);
}

/** Bytes of every parameter, for "nothing changed" checks. */
export { snapshot, changedParameters } from "../helpers/models";
export { nn };
