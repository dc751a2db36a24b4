/**
 * How a base file stores each adapted Linear-like weight: `(out, in)` as `nn.Linear` does, or
 * `(in, out)` as transformers' `Conv1D` (GPT-2) does. A merge from files alone must know it, and
 * an adapter's `fan_in_fan_out` cannot say: PEFT decides per layer by module type, and for an
 * adapter that targets both kinds it writes whichever value its last layer left. A non-square
 * weight's orientation follows from its shape; a square one's only from the architecture (the
 * `model_type` of the model's config.json) or from the user.
 */
import { ConfigError, FormatError, describe } from "../errors";
import { MAX_JSON_DEPTH, excessNestingOffset } from "../io/json-depth";

/** What is known about the storage of adapted weights. */
export interface WeightLayout {
  /** True when the module at `path` stores its weight `(in, out)`, false for `(out, in)`, null when unknown. */
  storedInOut(path: string): boolean | null;
  /** Where the knowledge comes from, for messages ("--conv1d", "config.json model_type gpt2", ...). */
  source: string;
}

/** Architectures whose transformers implementation stores these layers as Conv1D, `(in, out)`; every other adapted layer is an nn.Linear. */
const CONV1D_LAYERS: Record<string, readonly string[]> = {
  gpt2: ["attn.c_attn", "attn.q_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj", "crossattention.c_attn", "crossattention.q_attn", "crossattention.c_proj"],
  "openai-gpt": ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"],
};

/** Architectures whose transformers implementation has only nn.Linear layers, `(out, in)`. */
const LINEAR_ONLY = new Set([
  "llama",
  "mistral",
  "mixtral",
  "qwen2",
  "qwen2_moe",
  "qwen3",
  "gemma",
  "gemma2",
  "phi",
  "phi3",
  "gpt_neox",
  "gptj",
  "gpt_neo",
  "gpt_bigcode",
  "opt",
  "bloom",
  "falcon",
  "bert",
  "roberta",
  "t5",
  "starcoder2",
  "olmo",
]);

/** The model types {@link layoutFromModelType} knows. */
export const KNOWN_MODEL_TYPES: readonly string[] = [...Object.keys(CONV1D_LAYERS), ...LINEAR_ONLY].sort();

const endsWithModule = (path: string, suffix: string): boolean => path === suffix || path.endsWith(`.${suffix}`);

/** Nothing is known; `why` says why, as a clause ("no config.json lies beside the base file"). */
export function unknownLayout(why: string): WeightLayout {
  return { storedInOut: () => null, source: why };
}

/** Every adapted layer stored one way: `inOut` true for `(in, out)` (Conv1D), false for `(out, in)` (nn.Linear). */
export function uniformLayout(inOut: boolean, source: string): WeightLayout {
  return { storedInOut: () => inOut, source };
}

/**
 * The layers whose full module path matches `pattern` (a regex matched against the whole path or
 * its trailing dotted part, so `c_attn|c_proj` picks them at any depth) are stored `(in, out)`;
 * every other one `(out, in)`.
 */
export function patternLayout(pattern: string, source: string): WeightLayout {
  let re: RegExp;
  try {
    re = new RegExp(`^(?:.*\\.)?(?:${pattern})$`);
  } catch (err) {
    throw new ConfigError(`${source}: ${JSON.stringify(pattern)} is not a valid regular expression (${(err as Error).message})`);
  }
  return { storedInOut: (path) => re.test(path), source };
}

/** The layout of a transformers architecture, or null when `modelType` is not one this library knows. */
export function layoutFromModelType(modelType: string, source: string): WeightLayout | null {
  // Own keys only: "constructor" or "toString" is not an architecture.
  const conv1d = Object.hasOwn(CONV1D_LAYERS, modelType) ? CONV1D_LAYERS[modelType] : undefined;
  if (conv1d) return { storedInOut: (path) => conv1d.some((s) => endsWithModule(path, s)), source };
  if (LINEAR_ONLY.has(modelType)) return uniformLayout(false, source);
  return null;
}

/**
 * Reads `model_type` from the text of a transformers config.json. Bad JSON is a FormatError; a
 * missing or non-string `model_type` gives null.
 */
export function modelTypeOf(configText: string, file: string): string | null {
  const deep = excessNestingOffset(configText);
  if (deep >= 0) throw new FormatError(`${file}: nests arrays or objects more than ${MAX_JSON_DEPTH} levels deep (at character ${deep})`);
  let json: unknown;
  try {
    json = JSON.parse(configText);
  } catch (err) {
    throw new FormatError(`${file}: not valid JSON (${(err as Error).message})`);
  }
  if (json === null || typeof json !== "object" || Array.isArray(json)) throw new FormatError(`${file}: expected a JSON object, got ${describe(json)}`);
  const type = (json as Record<string, unknown>).model_type;
  return typeof type === "string" ? type : null;
}
