/**
 * PEFT's tensor names for each kind of adapted layer, in one table: every saved key, key check
 * and key pattern of the library is derived from it, so a spelling cannot drift between the
 * writer, the loader, the merge from files and the weight conversion.
 *
 * In a live model the factors sit under `<attribute>.<adapter>` (`lora_A.default.weight`,
 * `lora_embedding_A.default`); in PEFT's files the adapter name is stripped
 * (`lora_A.weight`, `lora_embedding_A`).
 */

/** The kinds of layer an adapter can be on, as the merge from files and the kernels name them. */
export type LayerKind = "linear" | "embedding";

/** Which of the two factors: A (r, in) or B (out, r). */
export type FactorName = "A" | "B";

interface KindKeys {
  /** The attribute holding each factor in a live layer. */
  attribute: Record<FactorName, string>;
  /** The key suffix of each factor in a PEFT file (adapter name stripped). */
  saved: Record<FactorName, string>;
}

/** The table: Linear factors are modules with a `weight`, Embedding factors bare parameters. */
export const PEFT_KEYS: Readonly<Record<LayerKind, KindKeys>> = {
  linear: { attribute: { A: "lora_A", B: "lora_B" }, saved: { A: "lora_A.weight", B: "lora_B.weight" } },
  embedding: { attribute: { A: "lora_embedding_A", B: "lora_embedding_B" }, saved: { A: "lora_embedding_A", B: "lora_embedding_B" } },
};

/** DoRA's magnitude vector: the attribute in a live layer, and the key suffix in a PEFT file. */
export const MAGNITUDE_KEY = "lora_magnitude_vector";

/** The base layer a LoRA layer wraps, as a live model names it (`fc.base_layer.weight`). */
export const BASE_LAYER_KEY = "base_layer";

const KINDS = Object.keys(PEFT_KEYS) as LayerKind[];
const FACTORS: FactorName[] = ["A", "B"];
const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
const alternatives = (names: string[]): string => names.map(escape).join("|");

/** The saved suffixes of a kind's factors, A then B: `["lora_A.weight", "lora_B.weight"]`. */
export function savedFactorKeys(kind: LayerKind): [string, string] {
  return [PEFT_KEYS[kind].saved.A, PEFT_KEYS[kind].saved.B];
}

/** Every saved factor suffix, in the order linear A, linear B, embedding A, embedding B. */
export const SAVED_FACTOR_KEYS: readonly string[] = KINDS.flatMap((k) => savedFactorKeys(k));

/** Every attribute holding a factor in a live layer (`lora_A`, ..., `lora_embedding_B`). */
export const FACTOR_ATTRIBUTES: readonly string[] = KINDS.flatMap((k) => FACTORS.map((f) => PEFT_KEYS[k].attribute[f]));

/** What a saved factor key says about itself. */
export interface SavedFactorKey {
  /** The key before the factor suffix (the module's path, with any prefix the key carries). */
  modulePath: string;
  kind: LayerKind;
  factor: FactorName;
}

const SAVED_FACTOR = new RegExp(`^(.+)\\.(${alternatives([...SAVED_FACTOR_KEYS])})$`);
const BY_SUFFIX = new Map(KINDS.flatMap((kind) => FACTORS.map((factor) => [PEFT_KEYS[kind].saved[factor], { kind, factor }] as const)));

/** Reads `<module path>.<saved factor suffix>` (`h.0.attn.c_attn.lora_A.weight`); null for any other key. */
export function parseSavedFactorKey(key: string): SavedFactorKey | null {
  const m = SAVED_FACTOR.exec(key);
  return m ? { modulePath: m[1], ...BY_SUFFIX.get(m[2])! } : null;
}

/**
 * A pattern for the keys a live model's LoRA layers have (`fc.base_layer.weight`,
 * `fc.lora_A.default.weight`), with the adapter name `adapterName` when one is given.
 */
export function liveLoraKeyPattern(adapterName?: string): RegExp {
  if (adapterName === undefined) return new RegExp(`(^|\\.)(${alternatives([BASE_LAYER_KEY, ...FACTOR_ATTRIBUTES])})\\.`);
  return new RegExp(`\\.(?:${alternatives([...FACTOR_ATTRIBUTES])})\\.${escape(adapterName)}(?:\\.|$)`);
}
