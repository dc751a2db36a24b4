/**
 * Which modules an adapter applies to, by PEFT's rules (a list entry equals the module's full
 * name or a `.`-suffix of it; a string is a regex for the whole name; "all-linear"), with
 * messages that say what went wrong: a list entry matching nothing is named with the closest
 * module names, and a string matching nothing is explained as the full-name regex it is.
 */
import { ConfigError } from "../errors";
import { Conv1D, Embedding, Linear } from "../nn/layers";
import { Module } from "../nn/module";
import { splitModulePath } from "../nn/module-paths";
import { FieldNaming, LORA_CONFIG_NAMING, ResolvedLoraConfig, matchesModuleName } from "./config";
import { LoraLayer, LoraLinear } from "./layers";
import { BASE_LAYER_KEY } from "./peft-keys";

type AnyLoraLayer = LoraLayer<Linear | Conv1D | Embedding>;
type Adaptable = Linear | Conv1D | Embedding;

const isAdaptable = (m: Module): m is Adaptable => m instanceof Linear || m instanceof Conv1D || m instanceof Embedding;

/** The modules selected, and the list entries of `targetModules` that select none. */
export interface TargetSelection {
  selected: [string, Adaptable | AnyLoraLayer][];
  /** Entries of a list `targetModules` that match no Linear/Embedding/Conv1D module (always empty for a string). */
  unmatched: string[];
}

/**
 * Selects the modules `config` targets in `model`. With `strict` (injection), a list entry that
 * matches no adaptable module is a ConfigError naming it and the closest names; without it
 * (loading an adapter written for another model), such entries are returned in `unmatched`, as
 * PEFT tolerates them. Selecting nothing at all is always a ConfigError, whose `field` is
 * the name of `targetModules` under `naming` and `got` its value.
 */
export function selectTargets(model: Module, config: ResolvedLoraConfig, strict = true, naming: FieldNaming = LORA_CONFIG_NAMING): TargetSelection {
  const all = model.namedModules().filter(([path]) => path !== "" && splitModulePath(path)[1] !== BASE_LAYER_KEY);
  const candidates = all.filter(([, m]) => isAdaptable(m) || m instanceof LoraLayer) as [string, Adaptable | AnyLoraLayer][];
  const names = candidates.map(([p]) => p);
  const spec = config.targetModules;
  const field = naming.name("targetModules");
  const refuse = (problem: string): never => {
    throw new ConfigError(`${naming.prefix}${field}: ${problem}`, { field, got: spec });
  };
  const unmatched = Array.isArray(spec) ? spec.filter((entry) => !names.some((n) => matchesModuleName([entry], n))) : [];
  if (strict && unmatched.length) {
    const why = unmatched.map((e) => explainUnmatched(e, names, all)).join("; ");
    const none = unmatched.length === spec.length ? `${JSON.stringify(spec)} matches no Linear/Embedding module: ` : "";
    refuse(`${none}${why}`);
  }
  const selected = candidates.filter(([path, m]) => {
    if (config.excludeModules && matchesModuleName(config.excludeModules, path)) return false;
    if (spec === "all-linear") {
      const linear = m instanceof Linear || m instanceof Conv1D || m instanceof LoraLinear;
      return linear && !/(^|\.)lm_head$/.test(path);
    }
    return matchesModuleName(spec, path);
  });
  if (selected.length === 0) {
    const hint =
      typeof spec === "string" && spec !== "all-linear"
        ? ` (a string is a regular expression that must match a module's whole dotted name, such as ${JSON.stringify(names[0] ?? "layers.0.q_proj")}; ` +
          `to select modules by the end of their name, pass a list: ${JSON.stringify([/^[\w.]+$/.test(spec) ? spec : lastPart(names[0] ?? "q_proj")])})`
        : config.excludeModules
          ? ` (${naming.name("excludeModules")} removed every module that ${field} selects)`
          : "";
    refuse(`${JSON.stringify(spec)} matches no Linear/Embedding module${hint}; the model has: ${listNames(names)}`);
  }
  return { selected, unmatched };
}

const lastPart = (name: string): string => splitModulePath(name)[1];

function listNames(names: string[]): string {
  if (names.length === 0) return "none";
  return names.slice(0, 20).join(", ") + (names.length > 20 ? `, ... (${names.length} in all)` : "");
}

/** Why a list entry selects nothing: it names a container, or a close name exists, or neither. */
function explainUnmatched(entry: string, names: string[], all: [string, Module][]): string {
  const container = all.find(([p]) => p === entry || p.endsWith(`.${entry}`));
  if (container) {
    const inside = names.filter((n) => n.startsWith(`${container[0]}.`)).map((n) => n.slice(container[0].length - entry.length));
    return (
      `"${entry}" names a ${container[1].constructor.name}, not a Linear/Embedding/Conv1D layer` +
      (inside.length
        ? `; list the layers inside it, such as ${inside
            .slice(0, 4)
            .map((n) => JSON.stringify(n))
            .join(", ")}`
        : "")
    );
  }
  const close = closeNames(entry, names);
  return (
    `"${entry}" matches no Linear/Embedding module` +
    (close.length ? `; did you mean ${close.map((n) => JSON.stringify(n)).join(" or ")}?` : `; the model has: ${listNames(names)}`)
  );
}

/**
 * Module-name endings closest to `entry`: among the suffixes with as many dotted parts as
 * `entry`, those at the smallest edit distance, if it is within a third of its length (at least 2).
 */
export function closeNames(entry: string, names: string[], limit = 3): string[] {
  const parts = entry.split(".").length;
  const suffixes = [...new Set(names.map((n) => n.split(".").slice(-parts).join(".")))].sort();
  const budget = Math.max(2, Math.floor(entry.length / 3));
  const scored = suffixes.map((s) => [s, editDistance(entry, s, budget)] as const).filter(([, d]) => d <= budget);
  const best = Math.min(...scored.map(([, d]) => d));
  return scored
    .filter(([, d]) => d === best)
    .slice(0, limit)
    .map(([s]) => s);
}

/** Levenshtein distance, giving up at `cap + 1` (names are short; this keeps long ones cheap). */
function editDistance(a: string, b: string, cap: number): number {
  if (Math.abs(a.length - b.length) > cap) return cap + 1;
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    let best = i;
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
      best = Math.min(best, row[j]);
    }
    if (best > cap) return cap + 1;
    prev = row;
  }
  return prev[b.length];
}
