/**
 * Merging a PEFT adapter into a base model's weights from the tensor names alone, with no model
 * code: for every adapted module path p, `<p>.weight` gets `W += s·B·A` (Linear; transposed
 * when fan_in_fan_out) or `W += s·(B·A)ᵀ` (Embedding), through the same native kernel as
 * `LoraModel.merge`, so half-precision weights are merged in fp32 and rounded once.
 */
import { Dtype, isFloatingDtype } from "../dtype";
import { ConfigError, FormatError } from "../errors";
import { Tensor, handleOf } from "../tensor";
import { ResolvedLoraConfig, layerSettings } from "./config";
import { loraNative } from "./native";
import { PEFT_KEY_PREFIX } from "./peft-config";
import { LayerKind, SAVED_FACTOR_KEYS, parseSavedFactorKey, savedFactorKeys } from "./peft-keys";
import { WeightLayout, uniformLayout } from "./weight-layout";

/** Name, shape and dtype of a stored tensor: a safetensors header entry or a loaded tensor. */
export interface TensorShapeInfo {
  name: string;
  shape: number[];
  dtype: Dtype | null;
}

/** One adapted module as the adapter files describe it. */
export interface AdapterModuleInfo {
  /** The module's path in the user model (the key without `base_model.model.` and the factor suffix). */
  path: string;
  kind: LayerKind;
  r: number;
  alpha: number;
  scale: number;
  keyA: string;
  keyB: string;
  shapeA: number[];
  shapeB: number[];
  dtype: Dtype | null;
}

/**
 * Lists the adapted modules of an adapter from its tensor names and shapes, with rank, alpha
 * and scale per module (rank_pattern / alpha_pattern / use_rslora applied). Checks that every
 * key is a LoRA factor under `base_model.model.`, that A and B come in pairs with one rank, and
 * that the rank agrees with the config; throws a FormatError naming the key otherwise.
 */
export function describeAdapterModules(config: ResolvedLoraConfig, tensors: TensorShapeInfo[], file: string): AdapterModuleInfo[] {
  if (config.useDora) {
    throw new ConfigError(
      `${file}: use_dora = true is not supported by the merge from files (a DoRA merge renormalizes by the magnitude vectors); load the adapter with loadAdapter and call mergeAndUnload()`,
    );
  }
  const byPath = new Map<string, Partial<Record<string, TensorShapeInfo>>>();
  const embeddings = new Set<string>();
  for (const t of tensors) {
    const key = parseSavedFactorKey(t.name);
    if (!t.name.startsWith(PEFT_KEY_PREFIX) || !key) {
      const suffixes = SAVED_FACTOR_KEYS.map((k) => `.${k}`);
      throw new FormatError(
        `${file}: ${JSON.stringify(t.name)} is not a LoRA factor key (expected ${PEFT_KEY_PREFIX}<module>${suffixes.slice(0, -1).join(", ")} or ${suffixes.at(-1)})`,
      );
    }
    const p = key.modulePath.slice(PEFT_KEY_PREFIX.length);
    const entry = byPath.get(p) ?? {};
    entry[t.name.slice(key.modulePath.length + 1)] = t;
    byPath.set(p, entry);
    if (key.kind === "embedding") embeddings.add(p);
  }
  const out: AdapterModuleInfo[] = [];
  for (const [p, entry] of byPath) {
    const kind: LayerKind = embeddings.has(p) ? "embedding" : "linear";
    const [na, nb] = savedFactorKeys(kind);
    const keyA = `${PEFT_KEY_PREFIX}${p}.${na}`;
    const keyB = `${PEFT_KEY_PREFIX}${p}.${nb}`;
    if (Object.keys(entry).length !== 2 || !entry[na] || !entry[nb]) {
      const have = Object.keys(entry).map((k) => `${PEFT_KEY_PREFIX}${p}.${k}`);
      throw new FormatError(`${file}: module ${p} needs exactly ${keyA} and ${keyB}; the file has ${have.join(", ")}`);
    }
    const A = entry[na]!;
    const B = entry[nb]!;
    if (A.shape.length !== 2 || B.shape.length !== 2 || A.shape[0] !== B.shape[1]) {
      throw new FormatError(`${file}: ${keyA} has shape [${A.shape.join(", ")}] and ${keyB} has shape [${B.shape.join(", ")}]; expected (r, in) and (out, r)`);
    }
    for (const t of [A, B]) {
      if (t.dtype === null || !isFloatingDtype(t.dtype))
        throw new FormatError(`${file}: ${t.name} has dtype ${t.dtype ?? "unsupported"}, expected a floating dtype`);
    }
    const { r, alpha, scale } = layerSettings(config, p);
    if (A.shape[0] !== r) {
      throw new FormatError(`${file}: ${keyA} has rank ${A.shape[0]}, but the config gives module ${p} r = ${r} (r / rank_pattern)`);
    }
    out.push({ path: p, kind, r, alpha, scale, keyA, keyB, shapeA: A.shape, shapeB: B.shape, dtype: A.dtype });
  }
  return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/** How an adapter module path becomes a base-file key; tried in this order, the first that finds every module wins. */
const KEY_STYLES: { label: string; key: (p: string) => string | null }[] = [
  { label: "<module>.weight", key: (p) => `${p}.weight` },
  { label: "base_model.model.<module>.weight", key: (p) => `${PEFT_KEY_PREFIX}${p}.weight` },
  { label: "model.<module>.weight", key: (p) => `model.${p}.weight` },
  { label: "<module without its model. prefix>.weight", key: (p) => (p.startsWith("model.") ? `${p.slice(6)}.weight` : null) },
  // GPT-2's published checkpoints were saved from GPT2Model: no "transformer." before the blocks.
  { label: "<module without its transformer. prefix>.weight", key: (p) => (p.startsWith("transformer.") ? `${p.slice(12)}.weight` : null) },
];

/** One planned module merge. */
export interface PlannedMerge {
  module: AdapterModuleInfo;
  /** The base-file key receiving the delta. */
  baseKey: string;
  /** True when the delta is added transposed (embeddings, fan_in_fan_out Linear). */
  transposed: boolean;
}

/** What to say when a square weight's layout is unknown: how to make it known. */
export const LAYOUT_ADVICE =
  "pass --conv1d <regex> naming the modules stored (in, out) like transformers' Conv1D (e.g. --conv1d 'c_attn|c_proj|c_fc'), " +
  "or --no-conv1d when every adapted layer is an nn.Linear, or put the model's config.json (with its model_type) beside the base file";

/**
 * Whether the Linear module `m` is merged transposed into the weight of shape `shape`: from the
 * shape when the weight is not square, else from `layout`. Throws a ConfigError when the two
 * disagree, when the shape fits neither orientation, or when a square weight's layout is unknown.
 */
function linearOrientation(m: AdapterModuleInfo, baseKey: string, shape: number[], layout: WeightLayout, file: string): boolean {
  const outDim = m.shapeB[0];
  const inDim = m.shapeA[1];
  const claimed = layout.storedInOut(m.path);
  const fitsOutIn = shape.length === 2 && shape[0] === outDim && shape[1] === inDim;
  const fitsInOut = shape.length === 2 && shape[0] === inDim && shape[1] === outDim;
  if (!fitsOutIn && !fitsInOut) {
    const want = claimed ? [inDim, outDim] : [outDim, inDim];
    throw new ConfigError(`${file}: ${baseKey} has shape [${shape.join(", ")}], but the adapter for ${m.path} needs [${want.join(", ")}]`);
  }
  if (fitsOutIn && fitsInOut) {
    if (claimed === null) {
      throw new ConfigError(
        `${file}: ${baseKey} is square [${shape.join(", ")}], so its shape cannot tell whether module ${m.path} stores it (out, in) like nn.Linear ` +
          `or (in, out) like transformers' Conv1D, and ${layout.source} (an adapter's fan_in_fan_out cannot say: PEFT decides per layer). ` +
          `Refusing rather than risk a wrong weight: ${LAYOUT_ADVICE}`,
      );
    }
    return claimed;
  }
  if (claimed !== null && claimed !== fitsInOut) {
    throw new ConfigError(
      `${file}: ${baseKey} has shape [${shape.join(", ")}], which stores module ${m.path} ${fitsInOut ? "(in, out) like Conv1D" : "(out, in) like nn.Linear"}, ` +
        `but ${layout.source} says ${claimed ? "(in, out)" : "(out, in)"}; check the base file and ${layout.source}`,
    );
  }
  return fitsInOut;
}

/**
 * Matches each adapted module to its weight in a base file and checks the shapes, before any data
 * is read. The base keys may be the module paths as in the adapter, or carry (or lack) a
 * `base_model.model.` / `model.` prefix: one naming style is picked for the whole file, the
 * first of those under which every module's `.weight` exists.
 *
 * A Linear module's weight is merged transposed when it is stored `(in, out)` (transformers'
 * Conv1D): known from the shape when the weight is not square, from `layout` when it is.
 *
 * @param layout What is known of the storage (see weight-layout.ts); a boolean says that every
 *   adapted Linear layer is stored `(in, out)` (true) or `(out, in)` (false).
 * @throws ConfigError when no style finds every module (listing the missing keys), a shape
 *   disagrees, or a square weight's layout is unknown (naming the module and how to say it).
 */
export function planWeightMerge(base: TensorShapeInfo[], modules: AdapterModuleInfo[], layout: WeightLayout | boolean, file: string): PlannedMerge[] {
  const known = typeof layout === "boolean" ? uniformLayout(layout, `fan_in_fan_out = ${layout}`) : layout;
  const byName = new Map(base.map((t) => [t.name, t]));
  const style = KEY_STYLES.find((s) =>
    modules.every((m) => {
      const k = s.key(m.path);
      return k !== null && byName.has(k);
    }),
  );
  if (!style) {
    const missing = modules.map((m) => `${m.path}.weight`).filter((k) => !byName.has(k));
    throw new ConfigError(
      `${file}: the base weights lack ${missing.slice(0, 12).join(", ")}${missing.length > 12 ? `, ... (${missing.length} in all)` : ""} ` +
        `(also tried the key styles ${KEY_STYLES.slice(1)
          .map((s) => s.label)
          .join(", ")})`,
    );
  }
  return modules.map((m) => {
    const baseKey = style.key(m.path)!;
    const w = byName.get(baseKey)!;
    let transposed: boolean;
    if (m.kind === "embedding") {
      transposed = true;
      const want = [m.shapeA[1], m.shapeB[0]];
      if (w.shape.join() !== want.join())
        throw new ConfigError(`${file}: ${baseKey} has shape [${w.shape.join(", ")}], but the adapter for ${m.path} needs [${want.join(", ")}]`);
    } else {
      transposed = linearOrientation(m, baseKey, w.shape, known, file);
    }
    if (w.dtype === null || !isFloatingDtype(w.dtype))
      throw new ConfigError(`${file}: ${baseKey} has dtype ${w.dtype ?? "unsupported"}; only floating weights can be merged`);
    return { module: m, baseKey, transposed };
  });
}

/** Options of {@link mergeWeights}. */
export interface MergeWeightsOptions {
  /** Cast every floating tensor of the output to this dtype (merged weights are rounded once). */
  dtype?: Dtype;
  /** Refuse (ConfigError naming the tensor) when a merged or cast tensor holds NaN/Inf. */
  safe?: boolean;
  /** Called after each module is merged. */
  onMerged?: (done: number, total: number, plan: PlannedMerge) => void;
}

/**
 * Applies planned merges to `base` (name → tensor, modified in place where the dtype is kept) and
 * returns the output weights, every tensor of `base` included, cast as `options.dtype` says.
 */
export function mergeWeights(
  base: Record<string, Tensor>,
  adapter: Record<string, Tensor>,
  plans: PlannedMerge[],
  options: MergeWeightsOptions = {},
): Record<string, Tensor> {
  const out: Record<string, Tensor> = { ...base };
  const target = options.dtype;
  const touched = new Set<string>();
  plans.forEach((plan, i) => {
    const { module: m, baseKey } = plan;
    const w = base[baseKey];
    const factors = [handleOf(adapter[m.keyA]), handleOf(adapter[m.keyB])];
    const outDtype = target ?? w.dtype;
    // Same dtype: the kernel merges in place (fp32 math for fp16/bf16, one rounding). A cast on
    // the way out: merge in a wide dtype and round once at the end, never twice.
    const work = outDtype === w.dtype ? w : w.to({ dtype: w.dtype === "float64" || outDtype === "float64" ? "float64" : "float32" });
    try {
      loraNative.loraMerge({
        weight: handleOf(work),
        factors,
        scales: [m.scale],
        embedding: m.kind === "embedding",
        fanInFanOut: plan.transposed && m.kind === "linear",
        safe: false,
        keepBackup: false,
      });
    } catch (err) {
      throw new ConfigError(`merging ${m.path} into ${baseKey} failed: ${(err as Error).message}`);
    }
    out[baseKey] = work.dtype === outDtype ? work : work.to({ dtype: outDtype });
    touched.add(baseKey);
    options.onMerged?.(i + 1, plans.length, plan);
  });
  if (target) {
    for (const [k, t] of Object.entries(out)) {
      if (!touched.has(k) && isFloatingDtype(t.dtype) && t.dtype !== target) {
        out[k] = t.to({ dtype: target });
        touched.add(k);
      }
    }
  }
  if (options.safe) {
    for (const k of touched) {
      if (!out[k].allFinite())
        throw new ConfigError(`refused (--safe): ${k} would hold NaN or Inf values after the merge${target ? ` and the cast to ${target}` : ""}`);
    }
  }
  return out;
}
