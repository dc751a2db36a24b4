/**
 * `AdapterRegistry`: the adapters a server may use, kept on disk as a folder of PEFT adapter
 * folders (`<root>/<name>/adapter_config.json`, `adapter_model.safetensors`) and loaded into one
 * model on first use. Beyond a memory budget the least recently used adapters are deleted from the
 * model again, except those a batch in flight holds ({@link AdapterRegistry.use} or
 * {@link AdapterRegistry.acquire} / {@link AdapterRegistry.release}).
 */
import * as fs from "fs";
import * as path from "path";
import { StateError, describe } from "../errors";
import { Module } from "../nn/module";
import { Dtype } from "../dtype";
import { runThenCleanUp } from "../sync-or-async";
import { optionsObject } from "../tensor";
import { checkAdapterName, noSuchAdapter } from "./adapter-names";
import { LoraModel } from "./model";
import { ADAPTER_CONFIG_NAME } from "./peft-config";
import { loadAdapter, loadAdapterAsync } from "./peft-format";

/** Options of {@link AdapterRegistry}. */
export interface AdapterRegistryOptions {
  /** Bytes the loaded adapters' factors may take before least recently used ones are evicted (default: no limit). */
  memoryBudget?: number;
}

const BYTES: Partial<Record<Dtype, number>> = { float64: 8, float32: 4, float16: 2, bfloat16: 2 };

/** Bytes adapter `name`'s factors take in `model` (all layers, any reserved padding included). */
export function adapterBytes(model: LoraModel, name: string): number {
  let bytes = 0;
  for (const [, layer] of model.loraLayers()) {
    if (!layer.adapterNames.includes(name)) continue;
    for (const t of layer.factors(name)) bytes += t.numel * (BYTES[t.dtype] ?? 4);
  }
  return bytes;
}

/** Lazily loaded adapters with a least-recently-used memory budget; see the module comment. */
export class AdapterRegistry<M extends Module = Module> {
  readonly root: string;
  readonly memoryBudget: number;
  #model: M | LoraModel<M>;
  /** Loaded adapters in least- to most-recently-used order (a Map keeps insertion order). */
  readonly #loaded = new Map<string, number>();
  /** How many batches in flight hold each adapter. */
  readonly #inUse = new Map<string, number>();
  /** Asynchronous loads in flight, by adapter; they run one after another (see #loadAsync). */
  readonly #loading = new Map<string, Promise<void>>();
  #loadChain: Promise<void> = Promise.resolve();

  /**
   * @param model The base model (adapters get injected on first load) or a LoraModel. Adapters it
   *   already holds are not the registry's: it never evicts them.
   * @param root The folder of adapter folders; a subfolder's name is its adapter's name.
   */
  constructor(model: M | LoraModel<M>, root: string, options: AdapterRegistryOptions = {}) {
    if (!(model instanceof Module)) throw new TypeError(`model: expected an nn.Module or a LoraModel, got ${describe(model)}`);
    if (typeof root !== "string" || !fs.existsSync(root) || !fs.statSync(root).isDirectory())
      throw new TypeError(`root: expected a folder of adapter folders, got ${describe(root)}`);
    optionsObject(options, "options");
    const budget = options.memoryBudget ?? Infinity;
    if (typeof budget !== "number" || !(budget >= 0))
      throw new RangeError(`memoryBudget: expected a number of bytes >= 0, got ${describe(options.memoryBudget)}`);
    this.#model = model;
    this.root = root;
    this.memoryBudget = budget;
  }

  /** The LoraModel serving the adapters, once one is loaded (null before). */
  get model(): LoraModel<M> | null {
    return this.#model instanceof LoraModel ? (this.#model as LoraModel<M>) : null;
  }

  /** Names of the adapters in the folder (subfolders holding an adapter_config.json). */
  available(): string[] {
    return fs
      .readdirSync(this.root, { withFileTypes: true })
      .filter((e) => e.isDirectory() && fs.existsSync(path.join(this.root, e.name, ADAPTER_CONFIG_NAME)))
      .map((e) => e.name)
      .sort();
  }

  /** Names of the adapters loaded now, least recently used first. */
  get loaded(): string[] {
    return [...this.#loaded.keys()];
  }

  /** Bytes each loaded adapter's factors take. */
  memory(): Record<string, number> {
    return Object.fromEntries(this.#loaded);
  }

  /** Bytes all loaded adapters take. */
  get totalBytes(): number {
    let sum = 0;
    for (const b of this.#loaded.values()) sum += b;
    return sum;
  }

  /**
   * Loads (when needed) and holds `names` for a batch: none of them is evicted until the matching
   * {@link release}. Returns the model (null while no adapter was ever loaded). Then evicts least recently used adapters that no batch
   * holds while the total exceeds the budget (held adapters may keep it above the budget).
   */
  acquire(names: string[]): LoraModel<M> | null {
    const unique = this.#checkNames(names);
    if (this.#loading.size)
      throw new StateError(`acquire: asynchronous loads are in flight (${[...this.#loading.keys()].join(", ")}); use acquireAsync while they run`);
    for (const n of unique) {
      if (this.#loaded.has(n)) {
        // Most recently used goes last.
        const bytes = this.#loaded.get(n)!;
        this.#loaded.delete(n);
        this.#loaded.set(n, bytes);
      } else {
        this.#load(n);
      }
      this.#inUse.set(n, (this.#inUse.get(n) ?? 0) + 1);
    }
    this.#evict();
    return this.model;
  }

  /**
   * {@link acquire} with the adapter files read asynchronously: the event loop keeps serving while
   * adapters load. Loads run one at a time, and concurrent requests for one adapter share its load.
   * The names are held from the start, so a load finishing meanwhile never evicts them.
   */
  async acquireAsync(names: string[]): Promise<LoraModel<M> | null> {
    const unique = this.#checkNames(names);
    for (const n of unique) this.#inUse.set(n, (this.#inUse.get(n) ?? 0) + 1);
    try {
      for (const n of unique) if (!this.#loaded.has(n)) await this.#loadAsync(n);
    } catch (err) {
      this.release(unique);
      throw err;
    }
    for (const n of unique) {
      const bytes = this.#loaded.get(n)!;
      this.#loaded.delete(n);
      this.#loaded.set(n, bytes);
    }
    this.#evict();
    return this.model;
  }

  /** {@link use} with {@link acquireAsync}: `fn` runs once the adapters are loaded, and they are released when it settles. */
  async useAsync<T>(names: string[], fn: (model: LoraModel<M> | null) => T | Promise<T>): Promise<T> {
    if (typeof fn !== "function") throw new TypeError(`fn: expected a function, got ${describe(fn)}`);
    const held = Array.isArray(names) ? names.filter((n) => n !== "__base__") : names;
    const model = await this.acquireAsync(held);
    try {
      return await fn(model);
    } finally {
      this.release(held);
    }
  }

  /** Ends a hold taken by {@link acquire} with the same names. */
  release(names: string[]): void {
    const unique = [...new Set(names)];
    for (const n of unique) {
      if (!this.#inUse.get(n)) throw new StateError(`release: adapter ${describe(n)} is not held by any batch`);
    }
    for (const n of unique) {
      const left = this.#inUse.get(n)! - 1;
      if (left === 0) this.#inUse.delete(n);
      else this.#inUse.set(n, left);
    }
    this.#evict();
  }

  /**
   * Runs `fn(model)` with `names` loaded and held (`"__base__"` entries are skipped), then
   * releases them, once the promise settles when `fn` returns one. `model` is null only while no
   * adapter was ever loaded (every name "__base__").
   */
  use<T>(names: string[], fn: (model: LoraModel<M> | null) => T): T {
    if (typeof fn !== "function") throw new TypeError(`fn: expected a function, got ${describe(fn)}`);
    const held = Array.isArray(names) ? names.filter((n) => n !== "__base__") : names;
    const model = this.acquire(held);
    return runThenCleanUp(
      () => fn(model),
      () => this.release(held),
    );
  }

  #checkNames(names: unknown): string[] {
    if (!Array.isArray(names)) throw new TypeError(`names: expected an array of adapter names, got ${describe(names)}`);
    const unique = [...new Set(names as unknown[])];
    for (const n of unique) this.#checkAvailable(n);
    return unique as string[];
  }

  #checkAvailable(name: unknown): void {
    checkAdapterName(name, "names");
    if (this.#loaded.has(name as string)) return;
    const dir = path.join(this.root, name as string);
    if (!fs.existsSync(path.join(dir, ADAPTER_CONFIG_NAME))) {
      throw noSuchAdapter(name, this.available(), "names", this.root);
    }
    const lm = this.model;
    if (lm && lm.adapterNames.includes(name as string))
      throw new StateError(`names: the model already holds an adapter ${describe(name)} that this registry did not load`);
  }

  #load(name: string): void {
    this.#model = loadAdapter(this.#model as Module, path.join(this.root, name), { adapterName: name }) as LoraModel<M>;
    this.#loaded.set(name, adapterBytes(this.model!, name));
  }

  // One load at a time: the first load injects into the plain model, and every later one adds to
  // the LoraModel it returned, so two loads must never start from the same model.
  #loadAsync(name: string): Promise<void> {
    let pending = this.#loading.get(name);
    if (pending) return pending;
    pending = this.#loadChain
      .then(async () => {
        if (this.#loaded.has(name)) return;
        this.#model = (await loadAdapterAsync(this.#model as Module, path.join(this.root, name), { adapterName: name })) as LoraModel<M>;
        this.#loaded.set(name, adapterBytes(this.model!, name));
      })
      .finally(() => this.#loading.delete(name));
    this.#loading.set(name, pending);
    this.#loadChain = pending.catch(() => undefined);
    return pending;
  }

  #evict(): void {
    let total = this.totalBytes;
    for (const [name, bytes] of [...this.#loaded]) {
      if (total <= this.memoryBudget) return;
      if (this.#inUse.has(name)) continue;
      this.model!.deleteAdapter(name);
      this.#loaded.delete(name);
      total -= bytes;
    }
  }
}
