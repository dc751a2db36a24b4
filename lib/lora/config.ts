/**
 * LoraConfig: the typed, validated configuration of one adapter, with PEFT's semantics.
 * Invalid values throw a ConfigError naming the field.
 */
import { ConfigError, describe, expectedGot } from "../errors";
import { fullNameMatcher, suffixKeyMatcher } from "./module-patterns";
import { WeightAwareInit, isWeightAwareInit } from "./init-strategies";

/** How the Linear factors start: PEFT's `init_lora_weights` (the weight-aware values: see init-strategies.ts). */
export type LinearInit = boolean | "gaussian" | WeightAwareInit;
/** How the Embedding factors start (see README: a-normal is this project's default). */
export type EmbeddingInit = "a-normal" | "b-normal";

/** The options a user gives; every field is optional and defaults as listed. */
export interface LoraConfig {
  /** Rank of the update (default 8). */
  r?: number;
  /** Scaling numerator: s = loraAlpha / r, or / √r with rsLoRA (default 8). */
  loraAlpha?: number;
  /** Dropout on the Linear adapter's input, in [0, 1) (default 0). */
  loraDropout?: number;
  /**
   * Module names to adapt: a list (exact name or `.`-suffix; every entry must match some module),
   * a regex string matching the whole name (RE2 syntax, matched in linear time), or "all-linear".
   */
  targetModules?: string[] | string;
  /** Module names never to adapt, with the same matching rules. */
  excludeModules?: string[] | string;
  /** Scale by loraAlpha / √r instead of loraAlpha / r (default false). */
  useRslora?: boolean;
  /**
   * Linear init: true = A kaiming_uniform_(a=√5), B zeros; "gaussian" = A normal_(0, 1/r), B zeros; false = no no-op guarantee (debugging);
   * "pissa", "pissa_niter_N", "olora" (factors from W's SVD/QR, W replaced by the residual), "orthogonal" (see init-strategies.ts).
   */
  initLoraWeights?: LinearInit;
  /** Embedding init: "a-normal" (default: A normal_(0, std), B zeros) or "b-normal" (PEFT's: A zeros, B normal_(0, std)). */
  embeddingInit?: EmbeddingInit;
  /** Standard deviation of the random embedding factor (default 1). */
  embeddingInitStd?: number;
  /** The base weight is stored (in, out), as in GPT-2's Conv1D (default false; set automatically for Conv1D). */
  fanInFanOut?: boolean;
  /** Per-module rank overrides: pattern → r (pattern matches the name or a `.`-suffix of it, as a regex). */
  rankPattern?: Record<string, number>;
  /** Per-module alpha overrides, like rankPattern. */
  alphaPattern?: Record<string, number>;
  /** Only "none" is supported (bias terms stay frozen). */
  bias?: "none";
  /** DoRA: each adapted layer also trains a magnitude vector (default false; see dora.ts). */
  useDora?: boolean;
}

/** A LoraConfig with every field present and checked. */
export interface ResolvedLoraConfig {
  r: number;
  loraAlpha: number;
  loraDropout: number;
  targetModules: string[] | string;
  excludeModules: string[] | string | null;
  useRslora: boolean;
  initLoraWeights: LinearInit;
  embeddingInit: EmbeddingInit;
  embeddingInitStd: number;
  fanInFanOut: boolean;
  rankPattern: Record<string, number>;
  alphaPattern: Record<string, number>;
  bias: "none";
  useDora: boolean;
}

const KNOWN_FIELDS = new Set([
  "r",
  "loraAlpha",
  "loraDropout",
  "targetModules",
  "excludeModules",
  "useRslora",
  "initLoraWeights",
  "embeddingInit",
  "embeddingInitStd",
  "fanInFanOut",
  "rankPattern",
  "alphaPattern",
  "bias",
  "useDora",
]);

/**
 * How the messages of {@link resolveLoraConfig} name a field: `name` maps a LoraConfig key to the
 * name the user wrote, and `prefix` says whose field it is. A config read from a PEFT file is
 * named as the file spells it (`adapter_config.json: lora_alpha`), so no message is reworded later.
 */
export interface FieldNaming {
  /** Comes before every field name in a message: "LoraConfig.", or a file path and ": ". */
  prefix: string;
  /** The user's name of a LoraConfig key; errors carry it as their `field`. */
  name(key: keyof LoraConfig): string;
}

/** LoraConfig's own names: `LoraConfig.loraAlpha: expected ...`. */
export const LORA_CONFIG_NAMING: FieldNaming = { prefix: "LoraConfig.", name: (key) => key };

/** The checks of one field kind each, throwing a ConfigError that carries `field`, `expected` and `got`. */
function fieldChecks(naming: FieldNaming) {
  const fail = (field: string, expected: string, got: unknown): never => {
    throw new ConfigError(`${naming.prefix}${field}: ${expectedGot(expected, got)}`, { field, expected, got });
  };
  const rank = (value: unknown, field: string): number => {
    if (typeof value !== "number" || !Number.isInteger(value) || value < 1) fail(field, "an integer >= 1", value);
    return value as number;
  };
  const alpha = (value: unknown, field: string): number => {
    if (typeof value !== "number" || !Number.isFinite(value) || value <= 0) fail(field, "a finite number > 0", value);
    return value as number;
  };
  const bool = (value: unknown, key: keyof LoraConfig, dflt: boolean): boolean => {
    if (value === undefined) return dflt;
    if (typeof value !== "boolean") fail(naming.name(key), "a boolean", value);
    return value as boolean;
  };
  const names = (value: unknown, key: keyof LoraConfig): string[] | string => {
    if (typeof value === "string") {
      if (value !== "all-linear") fullNameMatcher(value, `${naming.prefix}${naming.name(key)}`);
      return value;
    }
    if (!Array.isArray(value) || value.length === 0 || !value.every((v) => typeof v === "string" && v.length > 0)) {
      fail(naming.name(key), 'a non-empty list of module names, a regex string, or "all-linear"', value);
    }
    return [...(value as string[])];
  };
  const pattern = (value: unknown, key: keyof LoraConfig, check: (v: unknown, field: string) => number): Record<string, number> => {
    if (value === undefined) return {};
    const field = naming.name(key);
    if (value === null || typeof value !== "object" || Array.isArray(value)) fail(field, "an object of pattern → number", value);
    const out: Record<string, number> = {};
    for (const [k, v] of Object.entries(value as object)) {
      suffixKeyMatcher(k, `${naming.prefix}${field} key`);
      out[k] = check(v, `${field}["${k}"]`);
    }
    return out;
  };
  return { fail, rank, alpha, bool, names, pattern };
}

/**
 * Validates `config` and fills in defaults. Throws a ConfigError naming the first bad field, with
 * the field, what it expected and what it got as the error's `field`, `expected` and `got`.
 *
 * @param naming How messages name the fields (default: LoraConfig's own names).
 */
export function resolveLoraConfig(config: LoraConfig, naming: FieldNaming = LORA_CONFIG_NAMING): ResolvedLoraConfig {
  if (config === null || typeof config !== "object") throw new ConfigError(`LoraConfig: expected an object, got ${describe(config)}`);
  for (const key of Object.keys(config)) {
    if (!KNOWN_FIELDS.has(key)) throw new ConfigError(`LoraConfig: unknown field "${key}" (known: ${[...KNOWN_FIELDS].join(", ")})`);
  }
  const c = config;
  const check = fieldChecks(naming);
  const { fail } = check;
  const name = naming.name;
  if (c.targetModules === undefined) fail(name("targetModules"), 'a list of module names, a regex string, or "all-linear"', undefined);
  const dropout = c.loraDropout ?? 0;
  if (typeof dropout !== "number" || !(dropout >= 0 && dropout < 1)) fail(name("loraDropout"), "a number in [0, 1)", dropout);
  const initLoraWeights = c.initLoraWeights ?? true;
  if (initLoraWeights !== true && initLoraWeights !== false && initLoraWeights !== "gaussian" && !isWeightAwareInit(initLoraWeights)) {
    fail(name("initLoraWeights"), 'true, false, "gaussian", "pissa", "pissa_niter_N", "olora" or "orthogonal"', initLoraWeights);
  }
  const embeddingInit = c.embeddingInit ?? "a-normal";
  if (embeddingInit !== "a-normal" && embeddingInit !== "b-normal") fail(name("embeddingInit"), '"a-normal" or "b-normal"', embeddingInit);
  const std = c.embeddingInitStd ?? 1;
  if (typeof std !== "number" || !Number.isFinite(std) || std <= 0) fail(name("embeddingInitStd"), "a finite number > 0", std);
  if (c.bias !== undefined && c.bias !== "none") {
    const field = name("bias");
    throw new ConfigError(`${naming.prefix}${field}: only "none" is supported (bias terms stay frozen), got ${describe(c.bias)}`, {
      field,
      expected: '"none"',
      got: c.bias,
    });
  }
  return {
    r: check.rank(c.r ?? 8, name("r")),
    loraAlpha: check.alpha(c.loraAlpha ?? 8, name("loraAlpha")),
    loraDropout: dropout,
    targetModules: check.names(c.targetModules, "targetModules"),
    excludeModules: c.excludeModules === undefined ? null : check.names(c.excludeModules, "excludeModules"),
    useRslora: check.bool(c.useRslora, "useRslora", false),
    initLoraWeights,
    embeddingInit,
    embeddingInitStd: std,
    fanInFanOut: check.bool(c.fanInFanOut, "fanInFanOut", false),
    rankPattern: check.pattern(c.rankPattern, "rankPattern", check.rank),
    alphaPattern: check.pattern(c.alphaPattern, "alphaPattern", check.alpha),
    bias: "none",
    useDora: check.bool(c.useDora, "useDora", false),
  };
}

/** Whether `name` is selected by a list (exact or `.`-suffix) or by a regex matching the whole name. */
export function matchesModuleName(spec: string[] | string, name: string): boolean {
  if (typeof spec === "string") return fullNameMatcher(spec, "module pattern")(name);
  return spec.some((entry) => name === entry || name.endsWith(`.${entry}`));
}

/** The first pattern key matching `name` as PEFT does: the key is a regex for the name or a `.`-suffix of it. */
export function patternKeyFor(patterns: Record<string, number>, name: string): string | undefined {
  return Object.keys(patterns).find((key) => suffixKeyMatcher(key, "pattern key")(name));
}

/** The rank and scaling for module `name` under `config`, with rank/alpha patterns applied. */
export function layerSettings(config: ResolvedLoraConfig, name: string): { r: number; alpha: number; scale: number } {
  const rKey = patternKeyFor(config.rankPattern, name);
  const aKey = patternKeyFor(config.alphaPattern, name);
  const r = rKey === undefined ? config.r : config.rankPattern[rKey];
  const alpha = aKey === undefined ? config.loraAlpha : config.alphaPattern[aKey];
  return { r, alpha, scale: config.useRslora ? alpha / Math.sqrt(r) : alpha / r };
}
