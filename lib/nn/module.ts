/**
 * `Module`: the PyTorch-like base class. As in PyTorch, a field holding a Module is a child
 * and a field holding a Tensor is a parameter; names and state-dict keys follow the fields.
 */
import { describe } from "../errors";
import { Device, Dtype, checkDevice, checkDtype, isFloatingDtype } from "../dtype";
import { native } from "../binding";
import { keep } from "../scope";
import { Tensor, handleOf, noGrad, optionsObject } from "../tensor";

/** Base class of layers and models. Subclass it and write `forward(...)`. */
export class Module {
  /** True in training mode (dropout active), false after {@link eval}. */
  training = true;

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

  /** Moves/casts every parameter; `requiresGrad` is kept. Returns this. */
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
    for (const [, module] of this.namedModules()) {
      for (const [name, t] of module.ownParameters()) {
        const trainable = t.requiresGrad;
        const moved = noGrad(() => t.to(options)).detach();
        if (moved !== t && trainable) moved.requiresGrad = true;
        module.setParameter(name, keep(moved)); // moved inside tidy(): still the model's
      }
    }
    return this;
  }

  /**
   * Called on every module before {@link to} replaces any parameter; throw to refuse the move.
   * Modules holding state tied to their parameters' tensors override it.
   */
  protected checkMovable(): void {}

  /** The parameters by PyTorch key (`fc1.weight`), detached and sharing storage. */
  stateDict(): Record<string, Tensor> {
    const out: Record<string, Tensor> = {};
    for (const [name, t] of this.namedParameters()) out[name] = t.detach();
    return out;
  }

  /**
   * Copies values from `state` into the parameters. Strict by default: missing and unexpected
   * keys are listed in the error; shape mismatches are named. Nothing is written unless every
   * check passes.
   */
  loadStateDict(state: Record<string, Tensor>, options: { strict?: boolean } = {}): { missingKeys: string[]; unexpectedKeys: string[] } {
    if (state === null || typeof state !== "object") throw new TypeError(`state: expected a record of Tensors, got ${describe(state)}`);
    const strict = options.strict ?? true;
    const params = new Map(this.namedParameters());
    const missingKeys = [...params.keys()].filter((k) => !(k in state));
    const unexpectedKeys = Object.keys(state).filter((k) => !params.has(k));
    const problems: string[] = [];
    if (strict && missingKeys.length) problems.push(`missing keys: ${missingKeys.join(", ")}`);
    if (strict && unexpectedKeys.length) problems.push(`unexpected keys: ${unexpectedKeys.join(", ")}`);
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
