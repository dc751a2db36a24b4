/**
 * `injectAdapter` and `LoraModel`: find the target modules, swap in LoRA layers, and manage
 * adapters across the whole model (activate, disable, merge/unmerge, unload).
 */
import { ConfigError, StateError, describe } from "../errors";
import { checkAdapterName, noSuchAdapter, requireAdapter } from "./adapter-names";
import { checkUntied } from "./tied";
import { Conv1D, Embedding, Linear } from "../nn/layers";
import { Module } from "../nn/module";
import { Tensor, optionsObject } from "../tensor";
import { runAsync, runSync, step, TwinBody } from "../sync-or-async";
import { LoraConfig, ResolvedLoraConfig, layerSettings, resolveLoraConfig } from "./config";
import { withDefaultTargets } from "./default-targets";
import { LoraEmbedding, LoraLayer, LoraLinear, MergeOptions } from "./layers";
import { SaveAdapterOptions, saveAdapter, saveAdapterAsync } from "./peft-format";
import { selectTargets } from "./targets";

/** Options of {@link LoraModel.addAdapter} and {@link injectAdapter}. */
export interface AdapterOptions {
  /**
   * Keep the new factors in float32 on a float16/bfloat16 base (default true, as PEFT's
   * `autocast_adapter_dtype`): forward computes the low-rank path in float32 and rounds the sum
   * once, merge rounds once, and saved factors stay F32. false: factors take the base's dtype.
   */
  autocastAdapterDtype?: boolean;
  /**
   * A `targetModules` list entry that matches no module: "error" (default) throws a ConfigError
   * naming it and the closest names; "record" skips it, as PEFT does when loading an adapter
   * written for another model, and lists it in {@link LoraModel.unmatchedTargets}.
   */
  unmatchedTargets?: "error" | "record";
  /**
   * @internal Set by the adapter loaders: the factors come from a file, so a weight-aware
   * `initLoraWeights` (PiSSA, OLoRA) must not decompose the (already residual) base again.
   */
  factorsFromFile?: boolean;
}
import { withAdapterNames } from "./mixed";
import { parentOf } from "../nn/module-paths";
import { runThenCleanUp } from "../sync-or-async";
import { checkWeightAwareInit, isWeightAwareInit } from "./init-strategies";
import { WeightedAdapterOptions, addWeightedAdapter } from "./combine";

type AnyLoraLayer = LoraLayer<Linear | Conv1D | Embedding>;

/** The arguments of a module type's `forward`. */
export type ForwardArgs<M extends Module> = Parameters<M["forward"]>;
/** What a module type's `forward` returns. */
export type ForwardResult<M extends Module> = ReturnType<M["forward"]>;

/**
 * A model with LoRA adapters injected. Its `model` field is the (modified) user model, of the
 * type given to {@link injectAdapter}: `forward`, `model`, `mergeAndUnload()` and `unload()`
 * carry that type, so no cast is needed.
 */
export class LoraModel<M extends Module = Module> extends Module {
  model: M;
  readonly #configs = new Map<string, ResolvedLoraConfig>();
  readonly #unmatched = new Map<string, string[]>();
  #active: string[] = [];
  /** Adapters kept frozen even when active (loaded with `isTrainable: false`, or {@link setRequiresGrad}). */
  readonly #frozen = new Set<string>();

  /** @internal Use {@link injectAdapter}. */
  constructor(model: M) {
    super();
    this.model = model;
  }

  /** Calls the wrapped model's forward. */
  override forward(...args: ForwardArgs<M>): ForwardResult<M> {
    return this.model.forward(...(args as unknown[])) as ForwardResult<M>;
  }

  /** The LoRA layers with their paths in the user model. */
  loraLayers(): [string, AnyLoraLayer][] {
    return this.model.namedModules().filter((e): e is [string, AnyLoraLayer] => e[1] instanceof LoraLayer);
  }

  /** The configuration of each adapter. */
  get peftConfig(): Record<string, ResolvedLoraConfig> {
    return Object.fromEntries([...this.#configs].map(([k, v]) => [k, { ...v }]));
  }
  /** Per adapter, the `targetModules` list entries that matched no module of this model (see {@link AdapterOptions.unmatchedTargets}). */
  get unmatchedTargets(): Record<string, string[]> {
    return Object.fromEntries([...this.#unmatched].map(([k, v]) => [k, v.slice()]));
  }
  /** Names of all adapters. */
  get adapterNames(): string[] {
    return [...this.#configs.keys()];
  }
  /** Names of the active adapters. */
  get activeAdapters(): string[] {
    return this.#active.slice();
  }
  /** The first active adapter (PEFT's `active_adapter`). */
  get activeAdapter(): string {
    return this.#active[0];
  }

  /**
   * Injects a new adapter `name` into every module `config` targets. All new layers are built
   * and initialized before the model is touched, so a bad config changes nothing.
   *
   * @param options.factorsFromFile @internal The factors are about to be overwritten from a saved
   *   adapter: a weight-aware init (PiSSA, OLoRA) must not rewrite the base weight again, which
   *   is already the residual the adapter was saved against.
   */
  addAdapter(name: string, config: LoraConfig, options: AdapterOptions = {}): void {
    checkAdapterName(name);
    if (this.#configs.has(name)) throw new ConfigError(`adapterName: an adapter called "${name}" already exists; deleteAdapter("${name}") first`);
    this.#assertMutable("addAdapter");
    const { autocastAdapterDtype, unmatchedTargets } = checkAdapterOptions(options);
    const resolved = resolveLoraConfig(withDefaultTargets(this.model, config));
    const { selected: targets, unmatched } = selectTargets(this.model, resolved, unmatchedTargets === "error");
    const weightAware = isWeightAwareInit(resolved.initLoraWeights) && !options.factorsFromFile ? resolved.initLoraWeights : null;
    const initLoraWeights = isWeightAwareInit(resolved.initLoraWeights) && options.factorsFromFile ? true : resolved.initLoraWeights;
    const how = { initLoraWeights, embeddingInit: resolved.embeddingInit, embeddingInitStd: resolved.embeddingInitStd, autocastAdapterDtype };
    const planned = targets.map(([path, module]) => {
      const layer: AnyLoraLayer = module instanceof LoraLayer ? module : module instanceof Embedding ? new LoraEmbedding(module) : new LoraLinear(module);
      return { path, module, layer };
    });
    // Checks first: a merged layer cannot take a new adapter silently, and a rank far beyond
    // the layer's size adds no capacity but could ask for an enormous allocation.
    for (const p of planned) {
      if (p.layer.merged) throw new StateError(`addAdapter: ${p.path} has merged adapters; unmerge() first`);
      const [rows, cols] = p.layer.base_layer.weight.shape;
      const { r } = layerSettings(resolved, p.path);
      const limit = Math.max(1024, 16 * Math.max(rows, cols));
      if (r > limit) {
        throw new ConfigError(`LoraConfig.r: rank ${r} for ${p.path} is far beyond its weight's size [${rows}, ${cols}] (at most ${limit} is accepted)`);
      }
      if (weightAware) checkWeightAwareInit(weightAware, p.path, p.layer instanceof LoraEmbedding ? "embedding" : "linear", [rows, cols], r);
    }
    for (const { path, module, layer } of planned) {
      const { r, alpha, scale } = layerSettings(resolved, path);
      const dropout = layer instanceof LoraLinear ? resolved.loraDropout : 0;
      layer.addAdapter(name, { r, alpha, scale, dropout, ...(resolved.useDora ? { useDora: true } : {}) }, how);
      if (layer !== module) {
        const { parent, name: childName } = parentOf(this.model, path);
        parent.setChild(childName, layer);
        followMode(layer, parent.training);
      } else {
        followMode(layer, layer.training);
      }
    }
    this.#configs.set(name, resolved);
    this.#unmatched.set(name, unmatched);
    if (this.#active.length === 0) this.setAdapter(name);
    else this.#markTrainable();
  }

  /** @internal Used by hot swapping (lib/lora/hotswap.ts): adapter `name` now follows `config`. */
  replaceConfig(name: string, config: ResolvedLoraConfig): void {
    requireAdapter(name, this.adapterNames);
    this.#configs.set(name, config);
  }

  /**
   * Adds adapter `name` combining `adapters` with `weights`, as PEFT's `add_weighted_adapter`
   * (see {@link addWeightedAdapter} in combine.ts for the combination types). The new adapter is
   * not activated.
   */
  addWeightedAdapter(adapters: string[], weights: number[], name: string, options: WeightedAdapterOptions = {}): void {
    addWeightedAdapter(this, adapters, weights, name, options);
  }

  /** Makes `names` the active adapter(s): their parameters are trainable, all others frozen. */
  setAdapter(names: string | string[]): void {
    const list = typeof names === "string" ? [names] : names;
    if (!Array.isArray(list) || list.length === 0) throw new TypeError(`adapterName: expected a name or a non-empty list of names, got ${describe(names)}`);
    for (const n of list) requireAdapter(n, this.adapterNames);
    this.#assertMutable("setAdapter");
    for (const [, layer] of this.loraLayers()) layer.setActiveAdapters(list);
    this.#active = [...list];
    this.#markTrainable();
  }

  /** Removes adapter `name` from every layer. A merged adapter is refused. */
  deleteAdapter(name: string): void {
    requireAdapter(name, this.adapterNames);
    this.#assertMutable("deleteAdapter");
    const layers = this.loraLayers();
    const mergedIn = layers.filter(([, l]) => l.mergedAdapters.includes(name)).map(([p]) => p);
    if (mergedIn.length) throw new StateError(`deleteAdapter: "${name}" is merged into ${mergedIn.join(", ")}; unmerge() first`);
    for (const [, layer] of layers) layer.deleteAdapter(name);
    this.#configs.delete(name);
    this.#frozen.delete(name);
    this.#unmatched.delete(name);
    this.#active = this.#active.filter((n) => n !== name);
    if (this.#active.length === 0 && this.#configs.size > 0) this.setAdapter(this.adapterNames[0]);
  }

  /**
   * Sets whether adapter(s) `names` train (as PEFT's `set_requires_grad`). Trainability is kept per
   * adapter: a frozen adapter (e.g. loaded with `isTrainable: false`) stays frozen when other
   * adapters are added, deleted or activated, until this is called with `true`. Base weights and
   * inactive adapters are always frozen.
   */
  setRequiresGrad(names: string | string[], requiresGrad = true): void {
    const list = typeof names === "string" ? [names] : names;
    if (!Array.isArray(list)) throw new TypeError(`adapterName: expected a name or a list of names, got ${describe(names)}`);
    for (const n of list) requireAdapter(n, this.adapterNames);
    if (typeof requiresGrad !== "boolean") throw new TypeError(`requiresGrad: expected a boolean, got ${describe(requiresGrad)}`);
    for (const n of list) {
      if (requiresGrad) this.#frozen.delete(n);
      else this.#frozen.add(n);
    }
    this.#markTrainable();
  }

  /** Switches every adapter off: forward gives the base model's output (merged adapters are unmerged first). */
  disableAdapters(): void {
    this.#assertMutable("disableAdapters");
    for (const [, layer] of this.loraLayers()) layer.setDisabled(true);
  }
  /** Switches adapters back on. */
  enableAdapters(): void {
    this.#assertMutable("enableAdapters");
    for (const [, layer] of this.loraLayers()) layer.setDisabled(false);
  }
  /**
   * Runs `fn` with adapters disabled (forward gives the base model's output), then restores
   * exactly the state before: layers that were disabled stay disabled, and merged layers are
   * merged again with bit-identical weights.
   *
   * Inside `fn` the adapter state is frozen: merge, unmerge (and their async forms), add, set and
   * delete adapter, enable/disable, `to()` and `loadStateDict` throw a StateError and change
   * nothing. Forward, backward, saving and reading work. Calls nest: an inner
   * `withAdaptersDisabled` runs its `fn` in the same disabled state. When `fn` returns a promise,
   * the state is restored once it settles, and stays frozen until then.
   */
  withAdaptersDisabled<T>(fn: () => T): T {
    if (typeof fn !== "function") throw new TypeError(`fn: expected a function, got ${describe(fn)}`);
    const layers = this.loraLayers().map(([, l]) => l);
    for (const l of layers) l.assertIdle("withAdaptersDisabled");
    const entered: AnyLoraLayer[] = [];
    // Every layer entered is left again, even when another one fails to enter or to leave.
    const exit = (): void => {
      let failure: unknown = null;
      for (const l of entered.splice(0)) {
        try {
          l.exitDisabledScope();
        } catch (err) {
          failure ??= err;
        }
      }
      if (failure) throw failure;
    };
    try {
      for (const l of layers) {
        l.enterDisabledScope();
        entered.push(l);
      }
    } catch (err) {
      exit();
      throw err;
    }
    return runThenCleanUp(fn, exit);
  }

  /**
   * Runs `fn` with a mixed-adapter batch: row `i` of every LoRA layer's input uses adapter
   * `names[i]`, and `"__base__"` rows get the base output (PEFT's `adapter_names=`). An unknown
   * name or a merged adapter is refused before `fn` runs; a batch whose first dimension differs
   * from `names.length` is refused by the first layer. See {@link withAdapterNames}.
   */
  withAdapterNames<T>(names: string[], fn: () => T): T {
    return withAdapterNames(this, names, fn);
  }

  /**
   * The body of {@link merge} and {@link mergeAsync}: checks, then yields each layer's merge, in
   * place or on a worker; when one fails, the layers merged by this call are
   * restored bit for bit.
   */
  *#mergingLayers(options: MergeOptions): TwinBody<void> {
    this.#assertMutable("merge");
    this.#checkAdapterNames(options);
    this.#checkTies("merge", options);
    const done: [AnyLoraLayer, string[]][] = [];
    try {
      for (const [, layer] of this.loraLayers()) {
        const layerOptions = this.#layerOptions(layer, options);
        done.push([
          layer,
          yield* step(
            () => layer.merge(layerOptions),
            () => layer.mergeAsync(layerOptions),
          ),
        ]);
      }
    } catch (err) {
      for (const [layer, names] of done) rollback(layer, names);
      throw err;
    }
  }

  /**
   * Merges the active (or named) adapters into the base weights. All or nothing: if any layer
   * fails (e.g. `safe` finds NaN/Inf), the layers merged by this call are restored bit for bit.
   */
  merge(options: MergeOptions = {}): void {
    runSync(this.#mergingLayers(options));
  }

  /** {@link merge} with the heavy work on worker threads; the event loop keeps turning. */
  async mergeAsync(options: MergeOptions = {}): Promise<void> {
    await runAsync(this.#mergingLayers(options));
  }

  /** Restores every base weight bit for bit. No-op where nothing is merged. */
  unmerge(): void {
    this.#assertMutable("unmerge");
    for (const [, layer] of this.loraLayers()) layer.unmerge();
  }

  /** {@link unmerge} on worker threads. */
  async unmergeAsync(): Promise<void> {
    this.#assertMutable("unmerge");
    for (const [, layer] of this.loraLayers()) await layer.unmergeAsync();
  }

  /** Merges the active adapters and returns the user model with plain layers in place of LoRA layers. */
  mergeAndUnload(options: Omit<MergeOptions, "adapterNames"> & { adapterNames?: string[] } = {}): M {
    this.merge(options);
    return this.#unloadLayers(true);
  }

  /** {@link mergeAndUnload} with the merges on worker threads. */
  async mergeAndUnloadAsync(options: MergeOptions = {}): Promise<M> {
    await this.mergeAsync(options);
    return this.#unloadLayers(true);
  }

  /** Returns the user model with plain layers and nothing merged (adapters dropped). */
  unload(): M {
    this.unmerge();
    return this.#unloadLayers(false);
  }

  /**
   * Saves adapters in Hugging Face PEFT's layout (see {@link saveAdapter}): `adapter_model.safetensors`
   * and `adapter_config.json` in `dir`, or in `dir/<name>` for an adapter not named "default".
   * Returns the directories written.
   */
  saveAdapter(dir: string, options: SaveAdapterOptions = {}): string[] {
    return saveAdapter(this, dir, options);
  }

  /** {@link saveAdapter} with asynchronous file writes. */
  saveAdapterAsync(dir: string, options: SaveAdapterOptions = {}): Promise<string[]> {
    return saveAdapterAsync(this, dir, options);
  }

  /** Parameters that train: the active adapters' factors. */
  trainableParameters(): Tensor[] {
    return this.model.parameters().filter((p) => p.requiresGrad);
  }

  /** Counts as PEFT's `print_trainable_parameters` reports them. */
  trainableParameterCount(): { trainable: number; total: number; percent: number } {
    const params = this.model.parameters();
    const trainable = params.filter((p) => p.requiresGrad).reduce((n, p) => n + p.numel, 0);
    const total = params.reduce((n, p) => n + p.numel, 0);
    return { trainable, total, percent: total ? (100 * trainable) / total : 0 };
  }

  /** `trainable params: 1,234 || all params: 56,789 || trainable%: 2.1730`, as PEFT prints it. */
  formatTrainableParameters(): string {
    const { trainable, total, percent } = this.trainableParameterCount();
    return `trainable params: ${trainable.toLocaleString("en-US")} || all params: ${total.toLocaleString("en-US")} || trainable%: ${percent.toFixed(4)}`;
  }

  #unloadLayers(keepMerge: boolean): M {
    this.#assertMutable("unload");
    for (const [path, layer] of this.loraLayers()) {
      if (keepMerge) layer.commitMerge();
      const { parent, name: childName } = parentOf(this.model, path);
      parent.setChild(childName, layer.base_layer);
    }
    this.#configs.clear();
    this.#frozen.clear();
    this.#unmatched.clear();
    this.#active = [];
    return this.model;
  }

  #layerOptions(layer: AnyLoraLayer, options: MergeOptions): MergeOptions {
    const names = options.adapterNames ?? this.#active;
    return { safe: options.safe, adapterNames: names.filter((n) => layer.adapterNames.includes(n)) };
  }

  #checkAdapterNames(options: MergeOptions): void {
    optionsObject(options, "options");
    const names = options.adapterNames;
    if (names === undefined) return;
    if (!Array.isArray(names)) throw new TypeError(`adapterNames: expected an array of adapter names, got ${describe(names)}`);
    for (const n of names) {
      if (!this.#configs.has(n)) throw noSuchAdapter(n, this.adapterNames, "adapterNames");
    }
  }

  /** Refuses a merge that would change a parameter tied to (the same tensor as) a merged base weight. */
  #checkTies(operation: string, options: MergeOptions): void {
    const merging = this.loraLayers().filter(([, layer]) => {
      const names = this.#layerOptions(layer, options).adapterNames!;
      return names.some((n) => !layer.mergedAdapters.includes(n));
    });
    checkUntied(this.model, merging, operation);
  }

  #assertMutable(operation: string): void {
    for (const [, layer] of this.loraLayers()) layer.assertMutable(operation);
  }

  /** Only the active, unfrozen adapters' factors train; base weights and inactive adapters are frozen. */
  #markTrainable(): void {
    const activeFactors = new Set<Tensor>();
    const training = this.#active.filter((n) => !this.#frozen.has(n));
    for (const [, layer] of this.loraLayers()) {
      for (const name of training) if (layer.adapterNames.includes(name)) layer.adapterParameters(name).forEach((t) => activeFactors.add(t));
    }
    for (const p of this.model.parameters()) {
      const want = activeFactors.has(p);
      if (p.requiresGrad !== want) p.requiresGrad = want;
    }
  }
}

/**
 * New LoRA modules take the mode of the module they join (injecting into an `eval()` model must
 * not switch dropout on); the wrapped base layer keeps its own mode.
 */
function followMode(layer: AnyLoraLayer, training: boolean): void {
  const base = new Set(layer.base_layer.namedModules().map(([, m]) => m));
  for (const [, m] of layer.namedModules()) if (!base.has(m)) m.training = training;
}

function checkAdapterOptions(options: AdapterOptions): Required<AdapterOptions> {
  optionsObject(options, "options");
  const { autocastAdapterDtype = true, unmatchedTargets = "error", factorsFromFile = false } = options;
  if (typeof autocastAdapterDtype !== "boolean") throw new TypeError(`autocastAdapterDtype: expected a boolean, got ${describe(autocastAdapterDtype)}`);
  if (unmatchedTargets !== "error" && unmatchedTargets !== "record") {
    throw new TypeError(`unmatchedTargets: expected "error" or "record", got ${describe(unmatchedTargets)}`);
  }
  return { autocastAdapterDtype, unmatchedTargets, factorsFromFile };
}

/** Undoes the merge of `names` on `layer` made by the failed call, leaving earlier merges in place. */
function rollback(layer: AnyLoraLayer, names: string[]): void {
  if (names.length === 0) return;
  const earlier = layer.mergeCalls.map((call) => call.filter((n) => !names.includes(n))).filter((call) => call.length > 0);
  layer.unmerge();
  // Re-merging the earlier adapters from the pristine weight, call by call as they were merged,
  // reproduces their bits exactly: a half-precision merge rounds once per call.
  for (const adapterNames of earlier) layer.merge({ adapterNames });
}

/**
 * Injects LoRA adapter `adapterName` into `model` in place (matched Linear/Embedding/Conv1D
 * modules become LoraLinear/LoraEmbedding) and returns the LoraModel that manages it.
 * Base parameters are frozen; the adapter's factors are the trainable parameters. Every entry of
 * a `targetModules` list must match some module (see {@link AdapterOptions.unmatchedTargets}).
 */
export function injectAdapter<M extends Module>(model: M, config: LoraConfig, adapterName = "default", options: AdapterOptions = {}): LoraModel<M> {
  if (!(model instanceof Module)) throw new TypeError(`model: expected an nn.Module, got ${describe(model)}`);
  checkAdapterName(adapterName);
  const adapted = model.namedModules().filter(([, m]) => m instanceof LoraLayer) as [string, AnyLoraLayer][];
  if (adapted.length > 0) {
    const names = [...new Set(adapted.flatMap(([, l]) => l.adapterNames))];
    throw new StateError(
      `injectAdapter: the model already has LoRA adapters (${names.map((n) => `"${n}"`).join(", ")} in ${adapted.map(([p]) => p || "the model itself").join(", ")}); ` +
        `a second injection would replace them. Add another adapter with addAdapter(name, config) on the LoraModel that injectAdapter returned (or loadAdapter(thatLoraModel, dir) for a saved one)`,
    );
  }
  const lora = new LoraModel(model);
  lora.addAdapter(adapterName, config, options);
  return lora;
}
