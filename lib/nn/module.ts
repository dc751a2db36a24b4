/**
 * `Module`: the PyTorch-like base class. What each field becomes:
 * - a field holding a Module is a child;
 * - a field holding a Tensor is a parameter (trained by optimizers given `parameters()`);
 * - a tensor given to {@link Module.registerBuffer} is a buffer: state that is not trained
 *   (a causal mask, running statistics), moved by `to()` and, when persistent, saved.
 * Names and state-dict keys follow the fields. One tensor may sit under several names (tied
 * weights): every name is a state-dict key, and `parameters()` yields the tensor once.
 */
import { describe } from "../errors";
import { Device, Dtype, checkDevice, checkDtype, isFloatingDtype } from "../dtype";
import { native } from "../binding";
import { keep } from "../scope";
import { Tensor, handleOf, noGrad, optionsObject } from "../tensor";
import { liveLoraKeyPattern } from "../lora/peft-keys";

/** A registered buffer: its tensor (null: registered empty) and whether the state dict holds it. */
interface BufferSlot {
  tensor: Tensor | null;
  persistent: boolean;
}

/** Base class of layers and models. Subclass it and write `forward(...)`. */
export class Module {
  /** True in training mode (dropout active), false after {@link eval}. */
  training = true;

  /** Buffers by name. A private field: never listed among the enumerable fields that make parameters. */
  readonly #buffers = new Map<string, BufferSlot>();

  /** The computation of this module; subclasses implement it. */
  forward(..._args: unknown[]): unknown {
    throw new Error(`${this.constructor.name}.forward() is not implemented`);
  }

  /** Direct children as [name, module] pairs, in declaration order. */
  namedChildren(): [string, Module][] {
    return Object.entries(this).filter((e): e is [string, Module] => e[1] instanceof Module);
  }

  /** This module's own parameters (not its children's) as [name, tensor] pairs. */
  ownParameters(): [string, Tensor][] {
    return Object.entries(this).filter((e): e is [string, Tensor] => e[1] instanceof Tensor);
  }

  /** The child called `name`, or undefined. */
  getChild(name: string): Module | undefined {
    return this.namedChildren().find(([n]) => n === name)?.[1];
  }

  /** Replaces the child called `name` (used by adapter injection). */
  setChild(name: string, module: Module): void {
    if (!(this.getChild(name) instanceof Module)) throw new RangeError(`setChild: ${this.constructor.name} has no child "${name}"`);
    (this as Record<string, unknown>)[name] = module;
  }

  /**
   * Registers `tensor` as a buffer called `name` (PyTorch's `register_buffer`): state that is
   * not a parameter. `this[name]` then reads and replaces it. A buffer is never in
   * `parameters()`, is moved by `to()` (cast only when floating-point) and, unless
   * `persistent: false`, is a `stateDict()` key that `loadStateDict` fills.
   *
   * @example
   * class Block extends Module {
   *   declare mask: Tensor;
   *   constructor() { super(); this.registerBuffer("mask", causalMask, { persistent: false }); }
   * }
   */
  registerBuffer(name: string, tensor: Tensor | null, options: { persistent?: boolean } = {}): void {
    const { persistent = true } = optionsObject(options);
    const owner = this.constructor.name;
    if (typeof name !== "string" || name === "" || name.includes(".")) {
      throw new TypeError(`registerBuffer: name: expected a non-empty string without ".", got ${describe(name)}`);
    }
    if (tensor !== null && !(tensor instanceof Tensor)) throw new TypeError(`registerBuffer: tensor: expected a Tensor or null, got ${describe(tensor)}`);
    if (typeof persistent !== "boolean") throw new TypeError(`registerBuffer: persistent: expected a boolean, got ${describe(persistent)}`);
    const current = (this as Record<string, unknown>)[name];
    const isField = Object.prototype.propertyIsEnumerable.call(this, name);
    // A field may become a buffer when it is empty or already holds this very tensor; anything
    // else would silently drop a parameter or a child.
    if (!this.#buffers.has(name) && name in this && !(isField && (current === undefined || current === null || current === tensor))) {
      throw new TypeError(`registerBuffer: ${owner} already has an attribute "${name}" (${describe(current)}); buffers need a free name`);
    }
    const slot: BufferSlot = { tensor, persistent };
    this.#buffers.set(name, slot);
    Object.defineProperty(this, name, {
      enumerable: false, // not a field: so not a parameter
      configurable: true,
      get: () => slot.tensor,
      set: (value: unknown) => {
        if (value !== null && !(value instanceof Tensor)) throw new TypeError(`${owner}.${name}: a buffer holds a Tensor or null, got ${describe(value)}`);
        slot.tensor = value;
      },
    });
  }

  /** This module's own buffers (not its children's) that hold a tensor, as [name, tensor] pairs. */
  ownBuffers(): [string, Tensor][] {
    return [...this.#buffers].filter((e): e is [string, BufferSlot & { tensor: Tensor }] => e[1].tensor !== null).map(([n, b]) => [n, b.tensor]);
  }

  /** Every buffer with its dotted name (`attn.mask`), each tensor once. */
  namedBuffers(): [string, Tensor][] {
    const seen = new Set<Tensor>();
    const out: [string, Tensor][] = [];
    for (const [path, module] of this.namedModules()) {
      for (const [name, t] of module.ownBuffers()) {
        if (seen.has(t)) continue;
        seen.add(t);
        out.push([path ? `${path}.${name}` : name, t]);
      }
    }
    return out;
  }

  /** Every buffer, each once. */
  buffers(): Tensor[] {
    return this.namedBuffers().map(([, t]) => t);
  }

  /**
   * Every state-dict entry in PyTorch's order (each module's parameters, then its persistent
   * buffers, then its children), under every name it has: a tied tensor appears once per name.
   */
  #stateEntries(prefix = "", ancestors = new Set<Module>()): [string, Tensor][] {
    if (ancestors.has(this)) return []; // a module inside itself: PyTorch would recurse for ever
    const key = (name: string): string => (prefix ? `${prefix}.${name}` : name);
    const out: [string, Tensor][] = this.ownParameters().map(([n, t]) => [key(n), t]);
    for (const [n, slot] of this.#buffers) if (slot.persistent && slot.tensor) out.push([key(n), slot.tensor]);
    ancestors.add(this);
    for (const [n, child] of this.namedChildren()) out.push(...child.#stateEntries(key(n), ancestors));
    ancestors.delete(this);
    return out;
  }

  /** Replaces the parameter called `name` (used by {@link to}). */
  setParameter(name: string, value: Tensor): void {
    (this as Record<string, unknown>)[name] = value;
  }

  /** Every module in the tree with its dotted path (`encoder.layers.0.fc1`); this module is `""`. */
  namedModules(prefix = "", seen = new Set<Module>()): [string, Module][] {
    if (seen.has(this)) return [];
    seen.add(this);
    const out: [string, Module][] = [[prefix, this]];
    for (const [name, child] of this.namedChildren()) {
      out.push(...child.namedModules(prefix ? `${prefix}.${name}` : name, seen));
    }
    return out;
  }

  /** Every parameter with its dotted name (`fc1.weight`), each tensor once. */
  namedParameters(): [string, Tensor][] {
    const seen = new Set<Tensor>();
    const out: [string, Tensor][] = [];
    for (const [path, module] of this.namedModules()) {
      for (const [name, t] of module.ownParameters()) {
        if (seen.has(t)) continue;
        seen.add(t);
        out.push([path ? `${path}.${name}` : name, t]);
      }
    }
    return out;
  }

  /** Every parameter, each once. */
  parameters(): Tensor[] {
    return this.namedParameters().map(([, t]) => t);
  }

  /** Sets training mode on this module and all descendants. Returns this. */
  train(mode = true): this {
    if (typeof mode !== "boolean") throw new TypeError(`mode: expected a boolean, got ${describe(mode)}`);
    for (const [, m] of this.namedModules()) m.training = mode;
    return this;
  }

  /** Sets evaluation mode (dropout off). Returns this. */
  eval(): this {
    return this.train(false);
  }

  /**
   * Moves/casts every parameter and buffer; `requiresGrad` is kept, tied parameters stay tied,
   * and buffers that are not floating-point keep their dtype (as PyTorch). Returns this.
   */
  to(options: { device?: Device; dtype?: Dtype }): this {
    // Checked up front: a bad option found at the third parameter would leave the module half-moved.
    const { dtype, device } = optionsObject(options);
    if (dtype !== undefined) checkDtype(dtype, "dtype");
    if (device !== undefined) checkDevice(device, "device");
    const floating = dtype === undefined || isFloatingDtype(dtype);
    if (!floating && this.parameters().some((p) => p.requiresGrad)) {
      throw new TypeError(`dtype: trainable parameters must stay floating-point, got ${dtype}`);
    }
    for (const [, module] of this.namedModules()) module.checkMovable();
    // One moved tensor per tensor, so that a weight shared by two modules stays shared.
    const movedOf = new Map<Tensor, Tensor>();
    const move = (t: Tensor, castable: boolean): Tensor => {
      let moved = movedOf.get(t);
      if (!moved) {
        const trainable = t.requiresGrad;
        moved = noGrad(() => t.to(castable ? options : { device })).detach();
        if (moved !== t && trainable) moved.requiresGrad = true;
        keep(moved); // moved inside tidy(): still the model's
        movedOf.set(t, moved);
      }
      return moved;
    };
    for (const [, module] of this.namedModules()) {
      for (const [name, t] of module.ownParameters()) module.setParameter(name, move(t, true));
      for (const slot of module.#buffers.values()) {
        if (slot.tensor) slot.tensor = move(slot.tensor, isFloatingDtype(slot.tensor.dtype));
      }
    }
    return this;
  }

  /**
   * Called on every module before {@link to} replaces any parameter; throw to refuse the move.
   * Modules holding state tied to their parameters' tensors override it.
   */
  protected checkMovable(): void {}

  /**
   * Called on every module (with its dotted path) before {@link loadStateDict} writes anything;
   * throw to refuse the load. Modules holding state tied to their parameters' values override it.
   */
  protected checkLoadable(_path: string): void {}

  /**
   * The parameters and persistent buffers by PyTorch key (`fc1.weight`), detached and sharing
   * storage. A tied tensor is listed under each of its names, as in PyTorch.
   */
  stateDict(): Record<string, Tensor> {
    const out: Record<string, Tensor> = {};
    const detached = new Map<Tensor, Tensor>();
    for (const [name, t] of this.#stateEntries()) {
      let d = detached.get(t);
      if (!d) detached.set(t, (d = t.detach()));
      out[name] = d;
    }
    return out;
  }

  /**
   * Copies values from `state` into the parameters and persistent buffers. Strict by default:
   * missing and unexpected keys are listed in the error; shape mismatches are named. Nothing is
   * written unless every check passes. A tied tensor is expected under each of its names, as
   * PyTorch's strict loading does.
   */
  loadStateDict(state: Record<string, Tensor>, options: { strict?: boolean } = {}): { missingKeys: string[]; unexpectedKeys: string[] } {
    if (state === null || typeof state !== "object") throw new TypeError(`state: expected a record of Tensors, got ${describe(state)}`);
    const strict = options.strict ?? true;
    for (const [path, module] of this.namedModules()) module.checkLoadable(path);
    const params = new Map(this.#stateEntries());
    const missingKeys = [...params.keys()].filter((k) => !(k in state));
    const unexpectedKeys = Object.keys(state).filter((k) => !params.has(k));
    const problems: string[] = [];
    if (strict && missingKeys.length) problems.push(`missing keys: ${missingKeys.join(", ")}`);
    if (strict && unexpectedKeys.length)
      problems.push(`unexpected keys: ${unexpectedKeys.join(", ")}${unexpectedKeys.some((k) => LORA_KEY.test(k)) ? LORA_HINT : ""}`);
    for (const [key, target] of params) {
      const source = state[key];
      if (source === undefined) continue;
      if (!(source instanceof Tensor)) {
        problems.push(`${key}: expected a Tensor, got ${describe(source)}`);
      } else if (source.shape.join() !== target.shape.join()) {
        problems.push(`${key}: shape [${source.shape.join(", ")}] in the state dict, [${target.shape.join(", ")}] in the model`);
      }
    }
    if (problems.length) throw new Error(`loadStateDict: ${problems.join("; ")}`);
    noGrad(() => {
      for (const [key, target] of params) {
        const source = state[key];
        if (source) copyInto(target, source);
      }
    });
    return { missingKeys, unexpectedKeys };
  }

  /** Total number of parameter elements. */
  numParameters(onlyTrainable = false): number {
    return this.parameters()
      .filter((p) => !onlyTrainable || p.requiresGrad)
      .reduce((n, p) => n + p.numel, 0);
  }
}

// Keys a model with LoRA layers has (`fc.base_layer.weight`, `fc.lora_A.default.weight`): told by
// their names alone, since base modules know nothing of adapters.
const LORA_KEY = liveLoraKeyPattern();
const LORA_HINT =
  " (these keys come from a model with LoRA adapters: load them into that LoraModel, or call mergeAndUnload() on it and save the plain model's stateDict())";

/** Writes `source`'s values into `target` in place (dtype/device converted). */
export function copyInto(target: Tensor, source: Tensor): void {
  native.copyInto(handleOf(target, "target"), handleOf(source, "source"));
}

/** A name → value map kept in insertion order, with a type check on insert: the base of the dict modules. */
abstract class KeyedModule<V> extends Module {
  readonly #entries = new Map<string, V>();

  /** Throws a TypeError unless `value` may be stored under `name`. */
  protected abstract checkEntry(name: string, value: unknown): asserts value is V;

  /** The entries in insertion order. */
  protected entries(): [string, V][] {
    return [...this.#entries];
  }
  /** The entry called `name`. */
  get(name: string): V | undefined {
    return this.#entries.get(name);
  }
  /** Adds or replaces an entry. */
  set(name: string, value: V): void {
    this.checkEntry(name, value);
    this.#entries.set(name, value);
  }
  /** Removes an entry; returns whether it existed. */
  delete(name: string): boolean {
    return this.#entries.delete(name);
  }
  has(name: string): boolean {
    return this.#entries.has(name);
  }
  keys(): string[] {
    return [...this.#entries.keys()];
  }
}

/** A name → Module map whose entries are children named by their keys (`lora_A.default`). */
export class ModuleDict<M extends Module = Module> extends KeyedModule<M> {
  constructor(entries: Record<string, M> = {}) {
    super();
    for (const [k, v] of Object.entries(entries)) this.set(k, v);
  }
  protected checkEntry(name: string, value: unknown): asserts value is M {
    if (!(value instanceof Module)) throw new TypeError(`ModuleDict.set: expected a Module for "${name}", got ${describe(value)}`);
  }
  override namedChildren(): [string, Module][] {
    return this.entries();
  }
  override setChild(name: string, module: Module): void {
    this.set(name, module as M);
  }
}

/** A name → Tensor map whose entries are parameters named by their keys (`lora_embedding_A.default`). */
export class ParameterDict extends KeyedModule<Tensor> {
  protected checkEntry(name: string, value: unknown): asserts value is Tensor {
    if (!(value instanceof Tensor)) throw new TypeError(`ParameterDict.set: expected a Tensor for "${name}", got ${describe(value)}`);
  }
  override ownParameters(): [string, Tensor][] {
    return this.entries();
  }
  override setParameter(name: string, value: Tensor): void {
    this.set(name, value);
  }
}

/** A list of modules whose children are named `0`, `1`, ... */
export class ModuleList<M extends Module = Module> extends Module {
  readonly #items: M[] = [];

  constructor(modules: Iterable<M> = []) {
    super();
    for (const m of modules) this.push(m);
  }
  override namedChildren(): [string, Module][] {
    return this.#items.map((m, i) => [String(i), m]);
  }
  override setChild(name: string, module: Module): void {
    const i = Number(name);
    if (!Number.isInteger(i) || i < 0 || i >= this.#items.length) throw new RangeError(`setChild: no entry ${name} in a list of ${this.#items.length}`);
    this.#items[i] = module as M;
  }
  /** Appends a module. */
  push(module: M): this {
    if (!(module instanceof Module)) throw new TypeError(`ModuleList.push: expected a Module, got ${describe(module)}`);
    this.#items.push(module);
    return this;
  }
  /** The module at index `i` (negative counts from the end). */
  at(i: number): M {
    const m = this.#items.at(i);
    if (!m) throw new RangeError(`index ${i} is out of range for a list of ${this.#items.length}`);
    return m;
  }
  get length(): number {
    return this.#items.length;
  }
  [Symbol.iterator](): Iterator<M> {
    return this.#items[Symbol.iterator]();
  }
}

/** Modules applied one after another. */
export class Sequential extends ModuleList<Module> {
  constructor(...modules: Module[]) {
    super(modules);
  }
  override forward(x: unknown): unknown {
    let out = x;
    for (const m of this) {
      const next = m.forward(out);
      // Free each intermediate now rather than at the next collection; never the caller's
      // input, nor a tensor a module passed through unchanged (Dropout in eval mode).
      if (out !== x && out !== next && out instanceof Tensor) out.dispose();
      out = next;
    }
    return out;
  }
}
