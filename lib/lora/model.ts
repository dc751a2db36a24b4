/**
 * `injectAdapter` and `LoraModel`: find the target modules, swap in LoRA layers, and manage
 * adapters across the whole model (activate, disable, merge/unmerge, unload).
 */
import { ConfigError, StateError, describe } from "../errors";
import { Conv1D, Embedding, Linear } from "../nn/layers";
import { Module } from "../nn/module";
import { Tensor } from "../tensor";
import { LoraConfig, ResolvedLoraConfig, layerSettings, resolveLoraConfig } from "./config";
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
}

type AnyLoraLayer = LoraLayer<Linear | Conv1D | Embedding>;

/** Name of the module whose path is `path` within its parent, and the parent's path. */
function splitPath(path: string): [string, string] {
  const i = path.lastIndexOf(".");
  return i < 0 ? ["", path] : [path.slice(0, i), path.slice(i + 1)];
}

/** A model with LoRA adapters injected. Its `model` field is the (modified) user model. */
export class LoraModel extends Module {
  model: Module;
  readonly #configs = new Map<string, ResolvedLoraConfig>();
  readonly #unmatched = new Map<string, string[]>();
  #active: string[] = [];

  /** @internal Use {@link injectAdapter}. */
  constructor(model: Module) {
    super();
    this.model = model;
  }

  /** Calls the wrapped model's forward. */
  override forward(...args: unknown[]): unknown {
    return this.model.forward(...args);
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
   */
  addAdapter(name: string, config: LoraConfig, options: AdapterOptions = {}): void {
    if (typeof name !== "string" || name.length === 0 || name.includes(".")) {
      throw new TypeError(`adapterName: expected a non-empty name without dots, got ${describe(name)}`);
    }
    if (this.#configs.has(name)) throw new ConfigError(`adapterName: an adapter called "${name}" already exists; deleteAdapter("${name}") first`);
    this.#assertIdle("addAdapter");
    const { autocastAdapterDtype, unmatchedTargets } = checkAdapterOptions(options);
    const resolved = resolveLoraConfig(config);
    const { selected: targets, unmatched } = selectTargets(this.model, resolved, unmatchedTargets === "error");
    const how = { initLoraWeights: resolved.initLoraWeights, embeddingInit: resolved.embeddingInit, embeddingInitStd: resolved.embeddingInitStd, autocastAdapterDtype };
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
    }
    for (const { path, module, layer } of planned) {
      const { r, alpha, scale } = layerSettings(resolved, path);
      const dropout = layer instanceof LoraLinear ? resolved.loraDropout : 0;
      layer.addAdapter(name, { r, alpha, scale, dropout }, how);
      if (layer !== module) {
        const [parentPath, childName] = splitPath(path);
        const parent = parentPath === "" ? this.model : this.model.namedModules().find(([p]) => p === parentPath)![1];
        parent.setChild(childName, layer);
      }
    }
    this.#configs.set(name, resolved);
    this.#unmatched.set(name, unmatched);
    if (this.#active.length === 0) this.setAdapter(name);
    else this.#markTrainable();
  }

  /** Makes `names` the active adapter(s): their parameters are trainable, all others frozen. */
  setAdapter(names: string | string[]): void {
    const list = typeof names === "string" ? [names] : names;
    if (!Array.isArray(list) || list.length === 0) throw new TypeError(`adapterName: expected a name or a non-empty list of names, got ${describe(names)}`);
    for (const n of list) {
      if (!this.#configs.has(n)) throw new RangeError(`adapterName: no adapter ${describe(n)} (adapters: ${this.adapterNames.join(", ")})`);
    }
    this.#assertIdle("setAdapter");
    for (const [, layer] of this.loraLayers()) layer.setActiveAdapters(list);
    this.#active = [...list];
    this.#markTrainable();
  }

  /** Removes adapter `name` from every layer. A merged adapter is refused. */
  deleteAdapter(name: string): void {
    if (!this.#configs.has(name)) throw new RangeError(`adapterName: no adapter ${describe(name)} (adapters: ${this.adapterNames.join(", ")})`);
    this.#assertIdle("deleteAdapter");
    const layers = this.loraLayers();
    const mergedIn = layers.filter(([, l]) => l.mergedAdapters.includes(name)).map(([p]) => p);
    if (mergedIn.length) throw new StateError(`deleteAdapter: "${name}" is merged into ${mergedIn.join(", ")}; unmerge() first`);
    for (const [, layer] of layers) layer.deleteAdapter(name);
    this.#configs.delete(name);
    this.#unmatched.delete(name);
    this.#active = this.#active.filter((n) => n !== name);
    if (this.#active.length === 0 && this.#configs.size > 0) this.setAdapter(this.adapterNames[0]);
  }

  /** Switches every adapter off: forward gives the base model's output (merged adapters are unmerged first). */
  disableAdapters(): void {
    this.#assertIdle("disableAdapters");
    for (const [, layer] of this.loraLayers()) layer.setDisabled(true);
  }
  /** Switches adapters back on. */
  enableAdapters(): void {
    this.#assertIdle("enableAdapters");
    for (const [, layer] of this.loraLayers()) layer.setDisabled(false);
  }
  /**
   * Runs `fn` with adapters disabled, then restores exactly the state before: layers that were
   * disabled stay disabled, and merged layers are merged again with bit-identical weights.
   */
  withAdaptersDisabled<T>(fn: () => T): T {
    this.#assertIdle("withAdaptersDisabled");
    const layers = this.loraLayers().map(([, l]) => l);
    const wasDisabled = layers.map((l) => l.disabled);
    const disabled = (): T => {
      for (const l of layers) l.setDisabled(true);
      try {
        return fn();
      } finally {
        layers.forEach((l, i) => l.setDisabled(wasDisabled[i]));
      }
    };
    // Each merged layer is unmerged around the call and re-merged afterwards, bit for bit.
    const suspended = (i: number): T => (i === layers.length ? disabled() : layers[i].withMergeSuspended(() => suspended(i + 1)));
    return suspended(0);
  }

  /**
   * Merges the active (or named) adapters into the base weights. All or nothing: if any layer
   * fails (e.g. `safe` finds NaN/Inf), the layers merged by this call are restored bit for bit.
   */
  merge(options: MergeOptions = {}): void {
    this.#assertIdle("merge");
    this.#checkAdapterNames(options);
    const done: [AnyLoraLayer, string[]][] = [];
    try {
      for (const [, layer] of this.loraLayers()) done.push([layer, layer.merge(this.#layerOptions(layer, options))]);
    } catch (err) {
      for (const [layer, names] of done) rollback(layer, names);
      throw err;
    }
  }

  /** {@link merge} with the heavy work on worker threads; the event loop keeps turning. */
  async mergeAsync(options: MergeOptions = {}): Promise<void> {
    this.#assertIdle("merge");
    this.#checkAdapterNames(options);
    const done: [AnyLoraLayer, string[]][] = [];
    try {
      for (const [, layer] of this.loraLayers()) done.push([layer, await layer.mergeAsync(this.#layerOptions(layer, options))]);
    } catch (err) {
      for (const [layer, names] of done) rollback(layer, names);
      throw err;
    }
  }

  /** Restores every base weight bit for bit. No-op where nothing is merged. */
  unmerge(): void {
    this.#assertIdle("unmerge");
    for (const [, layer] of this.loraLayers()) layer.unmerge();
  }

  /** {@link unmerge} on worker threads. */
  async unmergeAsync(): Promise<void> {
    this.#assertIdle("unmerge");
    for (const [, layer] of this.loraLayers()) await layer.unmergeAsync();
  }

  /** Merges the active adapters and returns the user model with plain layers in place of LoRA layers. */
  mergeAndUnload(options: Omit<MergeOptions, "adapterNames"> & { adapterNames?: string[] } = {}): Module {
    this.merge(options);
    return this.#unloadLayers(true);
  }

  /** {@link mergeAndUnload} with the merges on worker threads. */
  async mergeAndUnloadAsync(options: MergeOptions = {}): Promise<Module> {
    await this.mergeAsync(options);
    return this.#unloadLayers(true);
  }

  /** Returns the user model with plain layers and nothing merged (adapters dropped). */
  unload(): Module {
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

  #unloadLayers(keepMerge: boolean): Module {
    this.#assertIdle("unload");
    for (const [path, layer] of this.loraLayers()) {
      if (keepMerge) layer.commitMerge();
      const [parentPath, childName] = splitPath(path);
      const parent = parentPath === "" ? this.model : this.model.namedModules().find(([p]) => p === parentPath)![1];
      parent.setChild(childName, layer.base_layer);
    }
    this.#configs.clear();
    this.#unmatched.clear();
    this.#active = [];
    return this.model;
  }

  #layerOptions(layer: AnyLoraLayer, options: MergeOptions): MergeOptions {
    const names = options.adapterNames ?? this.#active;
    return { safe: options.safe, adapterNames: names.filter((n) => layer.adapterNames.includes(n)) };
  }

  #checkAdapterNames(options: MergeOptions): void {
    if (options === null || typeof options !== "object") throw new TypeError(`options: expected an object, got ${describe(options)}`);
    const names = options.adapterNames;
    if (names === undefined) return;
    if (!Array.isArray(names)) throw new TypeError(`adapterNames: expected an array of adapter names, got ${describe(names)}`);
    for (const n of names) {
      if (!this.#configs.has(n)) throw new RangeError(`adapterNames: no adapter ${describe(n)} (adapters: ${this.adapterNames.join(", ")})`);
    }
  }

  #assertIdle(operation: string): void {
    for (const [, layer] of this.loraLayers()) layer.assertIdle(operation);
  }

  /** Only the active adapters' factors train; base weights and inactive adapters are frozen. */
  #markTrainable(): void {
    const activeFactors = new Set<Tensor>();
    for (const [, layer] of this.loraLayers()) {
      for (const name of this.#active) if (layer.adapterNames.includes(name)) layer.factors(name).forEach((t) => activeFactors.add(t));
    }
    for (const p of this.model.parameters()) {
      const want = activeFactors.has(p);
      if (p.requiresGrad !== want) p.requiresGrad = want;
    }
  }
}

function checkAdapterOptions(options: AdapterOptions): Required<AdapterOptions> {
  if (options === null || typeof options !== "object") throw new TypeError(`options: expected an object, got ${describe(options)}`);
  const { autocastAdapterDtype = true, unmatchedTargets = "error" } = options;
  if (typeof autocastAdapterDtype !== "boolean") throw new TypeError(`autocastAdapterDtype: expected a boolean, got ${describe(autocastAdapterDtype)}`);
  if (unmatchedTargets !== "error" && unmatchedTargets !== "record") {
    throw new TypeError(`unmatchedTargets: expected "error" or "record", got ${describe(unmatchedTargets)}`);
  }
  return { autocastAdapterDtype, unmatchedTargets };
}

/** Undoes the merge of `names` on `layer` made by the failed call, leaving earlier merges in place. */
function rollback(layer: AnyLoraLayer, names: string[]): void {
  if (names.length === 0) return;
  const earlier = layer.mergedAdapters.filter((n) => !names.includes(n));
  layer.unmerge();
  // Re-merging the earlier adapters from the pristine weight reproduces their bits exactly.
  if (earlier.length) layer.merge({ adapterNames: earlier });
}

/**
 * Injects LoRA adapter `adapterName` into `model` in place (matched Linear/Embedding/Conv1D
 * modules become LoraLinear/LoraEmbedding) and returns the LoraModel that manages it.
 * Base parameters are frozen; the adapter's factors are the trainable parameters. Every entry of
 * a `targetModules` list must match some module (see {@link AdapterOptions.unmatchedTargets}).
 */
export function injectAdapter(model: Module, config: LoraConfig, adapterName = "default", options: AdapterOptions = {}): LoraModel {
  if (!(model instanceof Module)) throw new TypeError(`model: expected an nn.Module, got ${describe(model)}`);
  const lora = new LoraModel(model);
  lora.addAdapter(adapterName, config, options);
  return lora;
}
