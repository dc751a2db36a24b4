/**
 * Adapter combination with PEFT's `add_weighted_adapter` semantics: a new adapter built from
 * existing ones and per-adapter weights (negative weights subtract).
 *
 * - `cat`: the factors stacked, A = [w₁s₁A₁; w₂s₂A₂; …], B = [B₁, B₂, …], rank Σrᵢ. Its output is
 *   exactly the weighted sum of the adapters' outputs.
 * - `linear`, `ties`, `dare_linear`, `dare_ties`, `magnitude_prune`: PEFT's merge of task tensors
 *   (utils/merge_utils.py) applied to the A factors and to the B factors separately, with weights
 *   ±√|wᵢsᵢ| (sign on A) and √|wᵢsᵢ|; every adapter must have the same rank.
 * - `svd` and `<type>_svd`: the merge applied to the deltas sᵢBᵢAᵢ with weights wᵢsᵢ (PEFT applies
 *   each adapter's scaling twice on this path, and so do we), then truncated to rank `svdRank`
 *   (default: the largest rank) by SVD.
 *
 * As in PEFT: the new adapter has r = lora_alpha = its rank (scaling 1), no rank or alpha patterns;
 * `dare_*` keep each entry with probability `density` without rescaling the kept ones (PEFT's
 * code computes the rescaled tensor and discards it). Unlike PEFT, the new adapter uses
 * the plain init (never a weight-aware one that would rewrite the base again) and no rsLoRA
 * (with rsLoRA, PEFT's scaling r/√r would multiply the combination by √r); it targets exactly the
 * layers that hold one of the combined adapters.
 */
import { native } from "../binding";
import { ConfigError, describe } from "../errors";
import { copyInto } from "../nn/module";
import { Tensor, handleOf, noGrad, optionsObject } from "../tensor";
import { checkAdapterName, requireAdapter } from "./adapter-names";
import { LoraConfig } from "./config";
import type { LoraModel } from "./model";

/** PEFT's combination types. */
export type CombinationType =
  | "cat"
  | "linear"
  | "svd"
  | "ties"
  | "ties_svd"
  | "dare_linear"
  | "dare_ties"
  | "dare_linear_svd"
  | "dare_ties_svd"
  | "magnitude_prune"
  | "magnitude_prune_svd";

const COMBINATIONS: readonly CombinationType[] = [
  "cat",
  "linear",
  "svd",
  "ties",
  "ties_svd",
  "dare_linear",
  "dare_ties",
  "dare_linear_svd",
  "dare_ties_svd",
  "magnitude_prune",
  "magnitude_prune_svd",
];
const NEEDS_DENSITY = new Set(["ties", "ties_svd", "dare_linear", "dare_ties", "dare_linear_svd", "dare_ties_svd", "magnitude_prune", "magnitude_prune_svd"]);
const SAME_RANK = new Set(["linear", "ties", "dare_linear", "dare_ties", "magnitude_prune"]);

/** Options of {@link addWeightedAdapter}, named as PEFT's arguments (camelCase). */
export interface WeightedAdapterOptions {
  /** How to combine (default "svd", as in PEFT). */
  combinationType?: CombinationType;
  /** Rank of an `*svd` result (default: the largest rank of the adapters). */
  svdRank?: number;
  /** Quantile in [0, 1] at which the `*svd` factors are clamped (default: no clamping). */
  svdClamp?: number;
  /** Full or reduced SVD (default true, as PEFT; the result is the same up to round-off). */
  svdFullMatrices?: boolean;
  /** Fraction of entries kept by ties / dare / magnitude_prune, in [0, 1]. */
  density?: number;
  /** TIES sign election: "total" (sum of values, default) or "frequency" (count of signs). */
  majoritySignMethod?: "total" | "frequency";
}

/** An adapter's allocated rank as PEFT counts it: r, or the largest rank its rank_pattern gives. */
function allocatedRank(config: { r: number; rankPattern: Record<string, number> }): number {
  return Math.max(config.r, ...Object.values(config.rankPattern));
}

function checkOptions(
  options: WeightedAdapterOptions,
): Required<Pick<WeightedAdapterOptions, "combinationType" | "majoritySignMethod" | "svdFullMatrices">> & WeightedAdapterOptions {
  optionsObject(options, "options");
  const combinationType = options.combinationType ?? "svd";
  if (!COMBINATIONS.includes(combinationType))
    throw new ConfigError(`combinationType: expected one of ${COMBINATIONS.join(", ")}, got ${describe(combinationType)}`);
  const majoritySignMethod = options.majoritySignMethod ?? "total";
  if (majoritySignMethod !== "total" && majoritySignMethod !== "frequency") {
    throw new ConfigError(`majoritySignMethod: expected "total" or "frequency", got ${describe(majoritySignMethod)}`);
  }
  const d = options.density;
  if (d !== undefined && (typeof d !== "number" || !(d >= 0 && d <= 1))) throw new ConfigError(`density: expected a number in [0, 1], got ${describe(d)}`);
  const c = options.svdClamp;
  if (c !== undefined && (typeof c !== "number" || !(c >= 0 && c <= 1))) throw new ConfigError(`svdClamp: expected a quantile in [0, 1], got ${describe(c)}`);
  const k = options.svdRank;
  if (k !== undefined && (typeof k !== "number" || !Number.isInteger(k) || k < 1))
    throw new ConfigError(`svdRank: expected an integer >= 1, got ${describe(k)}`);
  const full = options.svdFullMatrices ?? true;
  if (typeof full !== "boolean") throw new TypeError(`svdFullMatrices: expected a boolean, got ${describe(full)}`);
  return { ...options, combinationType, majoritySignMethod, svdFullMatrices: full };
}

/**
 * Adds adapter `name` to `lm`, combining `adapters` with `weights` (see the file comment for the
 * types). Everything is computed before the model changes: a bad argument or a failed
 * decomposition leaves it as it was. The new adapter is not activated.
 */
export function addWeightedAdapter(lm: LoraModel, adapters: string[], weights: number[], name: string, options: WeightedAdapterOptions = {}): void {
  if (!Array.isArray(adapters) || adapters.length === 0) throw new TypeError(`adapters: expected a non-empty list of adapter names, got ${describe(adapters)}`);
  for (const a of adapters) requireAdapter(a, lm.adapterNames, "adapters");
  if (new Set(adapters).size !== adapters.length) throw new ConfigError(`adapters: each adapter may appear once, got ${JSON.stringify(adapters)}`);
  if (!Array.isArray(weights) || weights.length !== adapters.length || weights.some((w) => typeof w !== "number" || !Number.isFinite(w))) {
    throw new TypeError(`weights: expected ${adapters.length} finite numbers (one per adapter), got ${describe(weights)}`);
  }
  checkAdapterName(name);
  if (lm.adapterNames.includes(name)) throw new ConfigError(`adapterName: an adapter called "${name}" already exists; deleteAdapter("${name}") first`);
  const opts = checkOptions(options);
  // PEFT: with one adapter only the linear combination is meaningful.
  const combination = adapters.length === 1 ? "linear" : opts.combinationType;
  if (NEEDS_DENSITY.has(combination) && opts.density === undefined)
    throw new ConfigError(`density: combinationType "${combination}" needs a density in [0, 1]`);

  const configs = lm.peftConfig;
  const dora = adapters.filter((a) => configs[a].useDora);
  if (dora.length) throw new ConfigError(`adapters: DoRA adapters (${dora.join(", ")}) cannot be combined (their magnitude vectors have no weighted sum)`);
  const ranks = adapters.map((a) => allocatedRank(configs[a]));
  let rank: number;
  if (SAME_RANK.has(combination)) {
    if (new Set(ranks).size !== 1)
      throw new ConfigError(`adapters: combinationType "${combination}" needs adapters of one rank, got ranks ${ranks.join(", ")}`);
    rank = ranks[0];
  } else if (combination === "cat") {
    rank = ranks.reduce((a, b) => a + b, 0);
  } else {
    rank = opts.svdRank ?? Math.max(...ranks);
  }

  // Compute every layer's factors first; the model is only changed once all succeeded.
  const planned: { path: string; A: Tensor; B: Tensor }[] = [];
  try {
    for (const [path, layer] of lm.loraLayers()) {
      const held = adapters.map((a, i) => ({ a, w: weights[i] })).filter(({ a }) => layer.adapterNames.includes(a));
      if (held.length === 0) continue;
      const factors = held.map(({ a }) => layer.factors(a));
      if (SAME_RANK.has(combination) && factors.some(([A]) => A.shape[0] !== rank)) {
        throw new ConfigError(
          `adapters: combinationType "${combination}" needs one rank in every layer, but ${path} holds ranks ${factors.map(([A]) => A.shape[0]).join(", ")}`,
        );
      }
      if (combination !== "cat" && !SAME_RANK.has(combination)) {
        const [rows, cols] = layer.base_layer.weight.shape;
        if (rank > Math.min(rows, cols)) throw new ConfigError(`svdRank: ${rank} exceeds min(out, in) = ${Math.min(rows, cols)} of ${path}`);
      }
      const [A, B] = native.loraCombineFactors({
        combination,
        As: factors.map(([A]) => handleOf(A.detach())),
        Bs: factors.map(([, B]) => handleOf(B.detach())),
        weights: held.map(({ w }) => w),
        scales: held.map(({ a }) => layer.settings(a)!.scale),
        rank,
        density: opts.density,
        majoritySignMethod: opts.majoritySignMethod,
        svdClamp: opts.svdClamp,
        svdFullMatrices: opts.svdFullMatrices,
      });
      planned.push({ path, A: new Tensor(A), B: new Tensor(B) });
    }
  } catch (err) {
    for (const p of planned) {
      p.A.dispose();
      p.B.dispose();
    }
    throw err;
  }

  const first = configs[adapters[0]];
  const config: LoraConfig = {
    r: rank,
    loraAlpha: rank,
    loraDropout: first.loraDropout,
    // A whole-name regex of the exact paths: a list entry would also match deeper modules ending in it.
    targetModules: planned.map((p) => p.path.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("|"),
    useRslora: false,
    initLoraWeights: true,
    embeddingInit: first.embeddingInit,
    embeddingInitStd: first.embeddingInitStd,
    fanInFanOut: first.fanInFanOut,
    bias: "none",
  };
  lm.addAdapter(name, config);
  noGrad(() => {
    const layers = new Map(lm.loraLayers());
    for (const p of planned) {
      const [A, B] = layers.get(p.path)!.factors(name);
      copyInto(A, p.A);
      copyInto(B, p.B);
      p.A.dispose();
      p.B.dispose();
    }
  });
}
