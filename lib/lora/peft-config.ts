/**
 * `adapter_config.json` as Hugging Face PEFT writes and reads it: the snake_case fields of its
 * LoraConfig, mapped to and from this library's {@link LoraConfig}. Fields asking for a PEFT
 * feature this library lacks are refused by name; fields newer PEFT versions add are tolerated.
 */
import { ConfigError, FormatError, describe, expectedGot } from "../errors";
import { MAX_JSON_DEPTH, excessNestingOffset } from "../io/json-depth";
import { EmbeddingInit, FieldNaming, LinearInit, LoraConfig, ResolvedLoraConfig, resolveLoraConfig } from "./config";
import { isWeightAwareInit } from "./init-strategies";

/** The file names PEFT uses inside an adapter directory. */
export const ADAPTER_CONFIG_NAME = "adapter_config.json";
export const ADAPTER_WEIGHTS_NAME = "adapter_model.safetensors";
/** PEFT's state-dict prefix: the PeftModel wraps the LoraModel (`base_model`), which wraps the user model (`model`). */
export const PEFT_KEY_PREFIX = "base_model.model.";
/** Our own settings that PEFT has no field for, kept under one key PEFT ignores. */
export const EXTRA_FIELD = "torch_lora";

type Json = Record<string, unknown>;

/**
 * PEFT fields whose value changes nothing we implement when they hold the default, each with a
 * test of "is the default". Any other value names a feature (DoRA, modules_to_save, ...) that
 * we refuse rather than silently drop.
 */
const isNull = (v: unknown): boolean => v === null || v === undefined;
const isFalse = (v: unknown): boolean => v === false || isNull(v);
const isEmpty = (v: unknown): boolean =>
  isNull(v) || (Array.isArray(v) && v.length === 0) || (typeof v === "object" && v !== null && !Array.isArray(v) && Object.keys(v).length === 0);

const DEFAULT_ONLY: Record<string, [(v: unknown) => boolean, string]> = {
  modules_to_save: [isEmpty, "null (extra fully trained modules are not supported)"],
  layers_to_transform: [isNull, "null (layer selection by index is not supported; list the modules in target_modules)"],
  layers_pattern: [isEmpty, "null (layer selection by index is not supported)"],
  megatron_config: [isNull, "null (Megatron parallel layers are not supported)"],
  trainable_token_indices: [isNull, "null (trainable tokens are not supported)"],
  loftq_config: [isEmpty, "{} or null (LoftQ is not supported)"],
  eva_config: [isNull, "null (EVA initialization is not supported)"],
  corda_config: [isNull, "null (CorDA is not supported)"],
  lora_ga_config: [isNull, "null (LoRA-GA is not supported)"],
  velora_config: [isNull, "null (VeLoRA is not supported)"],
  alora_invocation_tokens: [isNull, "null (aLoRA is not supported)"],
  use_qalora: [isFalse, "false (QALoRA is not supported)"],
  monteclora_config: [isNull, "null (MonteCLoRA is not supported)"],
  layer_replication: [isNull, "null (layer replication is not supported)"],
  lora_bias: [isFalse, "false (a bias on lora_B is not supported)"],
  target_parameters: [isEmpty, "null (targeting bare parameters is not supported)"],
  use_bdlora: [isNull, "null (block-diagonal LoRA is not supported)"],
  arrow_config: [isNull, "null (Arrow routing is not supported)"],
  kasa_config: [isNull, "null (KaSA is not supported)"],
  ensure_weight_tying: [isFalse, "false (adapter weight tying is not supported)"],
};

/** Fields that describe the run or its origin and change no weight: accepted with any value. */
const INFORMATIONAL = new Set([
  "task_type",
  "auto_mapping",
  "peft_version",
  "base_model_name_or_path",
  "revision",
  "inference_mode",
  "megatron_core",
  "qalora_group_size",
  "runtime_config",
]);

/** Fields we map to LoraConfig. */
const MAPPED = new Set([
  "peft_type",
  "r",
  "lora_alpha",
  "lora_dropout",
  "target_modules",
  "exclude_modules",
  "use_rslora",
  "fan_in_fan_out",
  "bias",
  "init_lora_weights",
  "rank_pattern",
  "alpha_pattern",
  "use_dora",
  EXTRA_FIELD,
]);

/** The result of reading an adapter_config.json. */
export interface PeftConfigReading {
  /** The configuration to build the adapter with. */
  config: LoraConfig;
  /** Fields present in the file that this version does not know (from newer PEFT versions); they were ignored. */
  ignoredFields: string[];
  /** The file's `inference_mode`, when it is a boolean. */
  inferenceMode: boolean | null;
}

/**
 * Writes `config` as PEFT's adapter_config.json fields (every field PEFT's LoraConfig has, at
 * PEFT's defaults where we have no equivalent), plus our embedding init under `torch_lora`.
 *
 * @param fanInFanOut What the saved layers store: true when the adapted Linear layers are Conv1D.
 * @param inferenceMode PEFT's `save_pretrained` writes true.
 */
export function toPeftConfigJson(config: ResolvedLoraConfig, fanInFanOut: boolean, inferenceMode = true): Json {
  const out: Json = {
    alora_invocation_tokens: null,
    alpha_pattern: { ...config.alphaPattern },
    arrow_config: null,
    auto_mapping: null,
    base_model_name_or_path: null,
    bias: "none",
    corda_config: null,
    ensure_weight_tying: false,
    eva_config: null,
    exclude_modules: config.excludeModules === null ? null : structuredClone(config.excludeModules),
    fan_in_fan_out: fanInFanOut,
    inference_mode: inferenceMode,
    init_lora_weights: config.initLoraWeights,
    kasa_config: null,
    layer_replication: null,
    layers_pattern: null,
    layers_to_transform: null,
    loftq_config: {},
    lora_alpha: config.loraAlpha,
    lora_bias: false,
    lora_dropout: config.loraDropout,
    lora_ga_config: null,
    megatron_config: null,
    megatron_core: "megatron.core",
    modules_to_save: null,
    monteclora_config: null,
    peft_type: "LORA",
    qalora_group_size: 16,
    r: config.r,
    rank_pattern: { ...config.rankPattern },
    revision: null,
    target_modules: structuredClone(config.targetModules),
    target_parameters: null,
    task_type: null,
    trainable_token_indices: null,
    use_bdlora: null,
    use_dora: config.useDora,
    use_qalora: false,
    use_rslora: config.useRslora,
    velora_config: null,
    [EXTRA_FIELD]: { embedding_init: config.embeddingInit, embedding_init_std: config.embeddingInitStd },
  };
  return out;
}

/** JSON text laid out as Python's `json.dumps(indent=2, sort_keys=True)` lays it out (keys sorted at every level). */
export function formatConfigJson(value: Json): string {
  const sorted = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(sorted);
    if (v !== null && typeof v === "object") {
      return Object.fromEntries(
        Object.keys(v)
          .sort()
          .map((k) => [k, sorted((v as Json)[k])]),
      );
    }
    return v;
  };
  return JSON.stringify(sorted(value), null, 2);
}

/**
 * Parses the text of an adapter_config.json. Bad JSON, JSON nested deeper than
 * {@link MAX_JSON_DEPTH} levels or a non-object is a FormatError naming `file` and the position.
 */
export function parseConfigText(text: string, file: string): Json {
  const deep = excessNestingOffset(text);
  if (deep >= 0)
    throw new FormatError(
      `${file}: nests arrays or objects more than ${MAX_JSON_DEPTH} levels deep (at character ${deep}); an adapter config has a few levels`,
    );
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new FormatError(`${file}: not valid JSON (${(err as Error).message})`);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new FormatError(`${file}: expected a JSON object of PEFT config fields, got ${describe(value)}`);
  }
  return value as Json;
}

/**
 * Maps a PEFT LoRA config (parsed adapter_config.json) to a {@link LoraConfig}. Throws a
 * ConfigError naming `file` and the field when the config asks for something unsupported
 * (`use_dora: true`, `modules_to_save`, `bias: "all"`, `init_lora_weights: "pissa"`, a
 * `peft_type` other than LORA, ...) or holds a value of the wrong type. Every unsupported field is
 * listed, not only the first.
 */
export function fromPeftConfigJson(json: Json, file: string): PeftConfigReading {
  const where = (field: string): string => `${file}: ${field}`;
  const problems: string[] = [];
  if (json.peft_type !== "LORA") {
    throw new ConfigError(`${where("peft_type")}: ${expectedGot('"LORA"', json.peft_type)} (only LoRA adapters are supported)`, {
      field: "peft_type",
      expected: '"LORA"',
      got: json.peft_type,
    });
  }
  for (const [field, [ok, expected]] of Object.entries(DEFAULT_ONLY)) {
    if (field in json && !ok(json[field])) problems.push(`${field} = ${JSON.stringify(json[field])} is not supported; expected ${expected}`);
  }
  if (json.bias !== undefined && json.bias !== "none") {
    problems.push(`bias = ${JSON.stringify(json.bias)} is not supported; expected "none" (bias terms stay frozen and are not saved)`);
  }
  const init = json.init_lora_weights ?? true;
  if (init !== true && init !== false && init !== "gaussian" && !isWeightAwareInit(init)) {
    problems.push(
      `init_lora_weights = ${JSON.stringify(init)} is not supported; expected true, false, "gaussian", "pissa", "pissa_niter_N", "olora" or "orthogonal" (CorDA, LoftQ and EVA need data or quantization this library lacks)`,
    );
  }
  if (isNull(json.target_modules)) {
    problems.push(`target_modules = ${JSON.stringify(json.target_modules ?? null)} is not supported; expected a list of module names or a regex string`);
  }
  if (problems.length) throw new ConfigError(`${file}: unsupported PEFT config: ${problems.join("; ")}`);

  const config: LoraConfig = {
    r: numberField(json, "r", file, 8),
    loraAlpha: numberField(json, "lora_alpha", file, 8),
    loraDropout: numberField(json, "lora_dropout", file, 0),
    targetModules: json.target_modules as string[] | string,
    useRslora: booleanField(json, "use_rslora", file, false),
    fanInFanOut: booleanField(json, "fan_in_fan_out", file, false),
    initLoraWeights: init as LinearInit,
    bias: "none",
    useDora: booleanField(json, "use_dora", file, false),
  };
  if (!isNull(json.exclude_modules)) config.excludeModules = json.exclude_modules as string[] | string;
  for (const [field, key] of [
    ["rank_pattern", "rankPattern"],
    ["alpha_pattern", "alphaPattern"],
  ] as const) {
    const v = json[field];
    if (isNull(v)) continue;
    if (typeof v !== "object" || Array.isArray(v)) throw invalidField(file, field, "an object of pattern → number", v);
    config[key] = v as Record<string, number>;
  }
  const extra = json[EXTRA_FIELD];
  if (extra !== undefined && extra !== null) {
    if (typeof extra !== "object" || Array.isArray(extra)) throw invalidField(file, EXTRA_FIELD, "an object", extra);
    const e = extra as Json;
    if (e.embedding_init !== undefined) config.embeddingInit = e.embedding_init as EmbeddingInit;
    if (e.embedding_init_std !== undefined) config.embeddingInitStd = e.embedding_init_std as number;
  }
  const ignoredFields = Object.keys(json)
    .filter((k) => !MAPPED.has(k) && !INFORMATIONAL.has(k) && !Object.hasOwn(DEFAULT_ONLY, k))
    .sort();
  const inferenceMode = typeof json.inference_mode === "boolean" ? json.inference_mode : null;
  return { config, ignoredFields, inferenceMode };
}

/** The ConfigError for a PEFT field of the wrong type: `<file>: <field>: expected <expected>, got <value>`, with those as its fields. */
function invalidField(file: string, field: string, expected: string, got: unknown): ConfigError {
  return new ConfigError(`${file}: ${field}: ${expectedGot(expected, got)}`, { field, expected, got });
}

function numberField(json: Json, field: string, file: string, dflt: number): number {
  const v = json[field];
  if (v === undefined || v === null) return dflt;
  if (typeof v !== "number" || !Number.isFinite(v)) throw invalidField(file, field, "a number", v);
  return v;
}

function booleanField(json: Json, field: string, file: string, dflt: boolean): boolean {
  const v = json[field];
  if (v === undefined || v === null) return dflt;
  if (typeof v !== "boolean") throw invalidField(file, field, "true or false", v);
  return v;
}

/** PEFT's name of each LoraConfig field (ours without an equivalent live under {@link EXTRA_FIELD}). */
const SNAKE: Record<keyof LoraConfig, string> = {
  r: "r",
  loraAlpha: "lora_alpha",
  loraDropout: "lora_dropout",
  targetModules: "target_modules",
  excludeModules: "exclude_modules",
  useRslora: "use_rslora",
  initLoraWeights: "init_lora_weights",
  fanInFanOut: "fan_in_fan_out",
  rankPattern: "rank_pattern",
  alphaPattern: "alpha_pattern",
  bias: "bias",
  useDora: "use_dora",
  embeddingInit: `${EXTRA_FIELD}.embedding_init`,
  embeddingInitStd: `${EXTRA_FIELD}.embedding_init_std`,
};

/** Messages about a config read from `file` name the file and PEFT's field (`<file>: lora_alpha: ...`). */
export function peftFieldNaming(file: string): FieldNaming {
  return { prefix: `${file}: `, name: (key) => SNAKE[key] };
}

/**
 * {@link fromPeftConfigJson} followed by full validation ({@link resolveLoraConfig}); a bad value
 * is reported with the file and PEFT's field name (`lora_alpha`, not `loraAlpha`), which is also
 * the error's `field`.
 */
export function resolvePeftConfig(json: Json, file: string): PeftConfigReading & { resolved: ResolvedLoraConfig } {
  const reading = fromPeftConfigJson(json, file);
  return { ...reading, resolved: resolveLoraConfig(reading.config, peftFieldNaming(file)) };
}
