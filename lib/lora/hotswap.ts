/**
 * Hot swapping: replacing an adapter's weights in place, without re-injection, so that a server
 * can change what an adapter slot holds while the model, its layers and every other adapter stay
 * as they are. Ranks may differ up to a rank reserved in advance with {@link reserveAdapterRank}:
 * the factors keep the reserved shape, zero-padded (zero rows of A and columns of B add exact
 * zeros), so a tensor's shape never changes under a running server.
 */
import { ConfigError, StateError, describe } from "../errors";
import { loadSafetensorsSync } from "../io";
import { Conv1D, Embedding, Linear } from "../nn/layers";
import { Module, copyInto } from "../nn/module";
import { Tensor, noGrad, zeros } from "../tensor";
import * as init from "../init";
import { layerSettings } from "./config";
import { requireAdapter } from "./adapter-names";
import { parseSavedFactorKey, savedFactorKeys } from "./peft-keys";
import { LoraEmbedding, LoraFactor, LoraLayer, LoraLinear } from "./layers";
import { LoraModel } from "./model";
import { selectTargets } from "./targets";
import { locateAdapter, planLoad, readAdapterConfig } from "./peft-format";

type AnyLoraLayer = LoraLayer<Linear | Conv1D | Embedding>;

/** Rank the factors of adapter `name` on `layer` have room for (their stored shape). */
export function reservedRank(layer: AnyLoraLayer, name: string): number {
  return layer.factors(name)[0].shape[0];
}

/** The factors of adapter `name` at its own rank: views that leave out the reserved zero padding. */
export function savedFactors(layer: AnyLoraLayer, name: string): [Tensor, Tensor] {
  const [A, B] = layer.factors(name);
  const r = layer.settings(name)!.r;
  return A.shape[0] === r ? [A, B] : [A.narrow(0, 0, r), B.narrow(1, 0, r)];
}

function layersHolding(model: LoraModel, name: string): [string, AnyLoraLayer][] {
  return model.loraLayers().filter(([, l]) => l.adapterNames.includes(name));
}

function checkSwappable(model: unknown, name: unknown, operation: string): [LoraModel, string] {
  if (!(model instanceof LoraModel)) throw new TypeError(`model: expected a LoraModel holding the adapter to ${operation}, got ${describe(model)}`);
  const checked = requireAdapter(name, model.adapterNames, "hotswap");
  for (const [path, layer] of layersHolding(model, checked)) {
    layer.assertMutable(operation);
    if (layer.mergedAdapters.includes(checked)) throw new StateError(`${operation}: adapter "${checked}" is merged into ${path}; unmerge() first`);
  }
  return [model, checked];
}

/**
 * Gives adapter `name` room for rank `maxRank` on every layer, so that later hot swaps may load
 * adapters of any rank up to it. The factors become zero-padded (maxRank, in) / (out, maxRank)
 * tensors: outputs, merges and saved files are unchanged (saving writes the adapter's own rank).
 * Call it once, before serving: this replaces the factor tensors (later swaps do not).
 */
export function reserveAdapterRank(model: LoraModel, name: string, maxRank: number): void {
  const [lm, checked] = checkSwappable(model, name, "reserveAdapterRank");
  if (!Number.isInteger(maxRank) || maxRank < 1) throw new RangeError(`maxRank: expected a positive integer, got ${describe(maxRank)}`);
  const layers = layersHolding(lm, checked);
  for (const [path, layer] of layers) {
    const has = reservedRank(layer, checked);
    if (maxRank < has) throw new RangeError(`maxRank: ${maxRank} is below the rank ${has} adapter "${checked}" already has in ${path}`);
  }
  for (const [, layer] of layers) {
    const [A, B] = layer.factors(checked);
    if (A.shape[0] === maxRank) continue;
    const opts = { dtype: A.dtype, device: A.device };
    const A2 = zeros([maxRank, A.shape[1]], opts);
    const B2 = zeros([B.shape[0], maxRank], opts);
    noGrad(() => {
      copyInto(A2.narrow(0, 0, A.shape[0]), A);
      copyInto(B2.narrow(1, 0, B.shape[1]), B);
    });
    A2.requiresGrad = A.requiresGrad;
    B2.requiresGrad = B.requiresGrad;
    if (layer instanceof LoraEmbedding) {
      layer.lora_embedding_A.set(checked, A2);
      layer.lora_embedding_B.set(checked, B2);
    } else if (layer instanceof LoraLinear) {
      layer.lora_A.set(checked, new LoraFactor(A2));
      layer.lora_B.set(checked, new LoraFactor(B2));
    }
  }
}

/**
 * Loads the PEFT adapter in `dir` into the existing adapter `name` of `model`, in place: the same
 * layers and the same factor tensors receive the new values (zero-padded up to the rank reserved
 * with {@link reserveAdapterRank}), and the adapter's rank, scaling and configuration become the
 * loaded one's. Used by `loadAdapter(model, dir, { hotswap: name })`.
 *
 * Everything is checked before anything is written, and a refused swap changes nothing:
 * - the loaded adapter must target exactly the modules adapter `name` is on (ConfigError otherwise);
 * - its rank on each module must fit the reserved rank (ConfigError naming the module);
 * - its file must hold only LoRA factors: a file that carries base weights would change the output
 *   of every other adapter, so it is refused (ConfigError).
 * Other adapters' tensors are never written, so forwards on them, before or after, are unaffected.
 *
 * @returns `model`.
 */
export function hotswapAdapter<M extends Module>(model: LoraModel<M> | Module, dir: string, name: string): LoraModel<M> {
  const [lm, checked] = checkSwappable(model, name, "hotswap");
  const loc = locateAdapter(dir);
  const { resolved } = readAdapterConfig(loc.configPath);
  const layers = layersHolding(lm, checked);
  const held = new Map(layers);
  const tensors = loadSafetensorsSync(loc.weightsPath);
  // Target modules first: planLoad would report a differing set as missing/unexpected keys.
  const wanted = selectTargets(lm.model, resolved, false).selected.map(([p]) => p);
  const extra = wanted.filter((p) => !held.has(p));
  const lacking = layers.map(([p]) => p).filter((p) => !wanted.includes(p));
  if (extra.length || lacking.length) {
    throw new ConfigError(
      `hotswap: the adapter in ${loc.dir} targets other modules than adapter "${checked}"` +
        (extra.length ? `; also ${extra.join(", ")}` : "") +
        (lacking.length ? `; not ${lacking.join(", ")}` : "") +
        `. Hot swapping keeps the injected layers as they are: load it as a new adapter instead`,
    );
  }
  for (const [path, layer] of layers) {
    const { r } = layerSettings(resolved, path);
    const room = reservedRank(layer, checked);
    if (r > room) {
      throw new ConfigError(
        `hotswap: the adapter in ${loc.dir} has rank ${r} on ${path}, above the rank ${room} reserved for "${checked}"; reserveAdapterRank(model, "${checked}", ${r}) before serving`,
      );
    }
  }
  const slots = planLoad(lm, resolved, checked, tensors, loc);
  const foreign = slots.filter((s) => parseSavedFactorKey(s.key) === null).map((s) => s.key);
  if (foreign.length)
    throw new ConfigError(`hotswap: ${loc.weightsPath} also holds base weights (${foreign.join(", ")}), which would change every adapter's output`);
  const byKey = new Map(slots.map((s) => [s.key, tensors[s.key]]));
  noGrad(() => {
    for (const [path, layer] of layers) {
      const [A, B] = layer.factors(checked);
      const { r } = layerSettings(resolved, path);
      const [aKey, bKey] = savedFactorKeys(layer instanceof LoraEmbedding ? "embedding" : "linear");
      const fileA = byKey.get(slots.find((s) => s.key.endsWith(`${path}.${aKey}`))!.key)!;
      const fileB = byKey.get(slots.find((s) => s.key.endsWith(`${path}.${bKey}`))!.key)!;
      if (r < A.shape[0]) {
        init.zeros_(A.narrow(0, r, A.shape[0] - r));
        init.zeros_(B.narrow(1, r, B.shape[1] - r));
      }
      copyInto(A.narrow(0, 0, r), fileA);
      copyInto(B.narrow(1, 0, r), fileB);
    }
  });
  for (const [path, layer] of layers) {
    const { r, alpha, scale } = layerSettings(resolved, path);
    layer.replaceSettings(checked, { r, alpha, scale, dropout: layer instanceof LoraLinear ? resolved.loraDropout : 0 });
  }
  lm.replaceConfig(checked, resolved);
  return lm as LoraModel<M>;
}
