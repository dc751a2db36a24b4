/**
 * LoRA layers: `LoraLinear` and `LoraEmbedding` wrap a base layer and hold per-adapter factors
 * under PEFT's names (`lora_A.<adapter>.weight`, `lora_embedding_A.<adapter>`). The shared
 * adapter bookkeeping (active set, merge state, exact-unmerge backup, async guard) lives in
 * `LoraLayer`; each subclass adds its factors, init and one-native-call forward.
 */
import { LoraMergeOptions, NativeTensor } from "../binding";
import { StateError, describe } from "../errors";
import * as init from "../init";
import { Conv1D, Embedding, Linear } from "../nn/layers";
import { Module, ModuleDict, ParameterDict } from "../nn/module";
import { keep, tidy } from "../scope";
import { runAsync, runSync, step, TwinBody } from "../sync-or-async";
import { Tensor, empty, handleOf, optionsObject } from "../tensor";
import { EmbeddingInit, LinearInit } from "./config";
import { checkWeightAwareInit, initFactorsFromWeight, isWeightAwareInit } from "./init-strategies";
import { DoraTarget, doraEmbedding, doraInitialMagnitude, doraLinear, doraMergeRequest } from "./dora";
import { ForwardAdapter, explainEmbeddingFailure, explainLinearFailure, explainMergeFailure } from "./kernel-checks";
import { loraNative } from "./native";
import { noSuchAdapter } from "./adapter-names";

/** Per-adapter settings of one layer. */
export interface AdapterSettings {
  r: number;
  alpha: number;
  scale: number;
  dropout: number;
  /** DoRA: the adapter also trains a magnitude vector (see dora.ts). */
  useDora?: boolean;
}

/** How to initialize a new adapter's factors. */
export interface AdapterInit {
  initLoraWeights: LinearInit;
  embeddingInit: EmbeddingInit;
  embeddingInitStd: number;
  /** float32 factors on a float16/bfloat16 base (default true, PEFT's `autocast_adapter_dtype`). */
  autocastAdapterDtype?: boolean;
}

/** Options of {@link LoraLayer.merge}. */
export interface MergeOptions {
  /** Compute the merged weight aside and refuse to write NaN/Inf (default false). */
  safe?: boolean;
  /** Adapters to merge (default: the active ones). */
  adapterNames?: string[];
}

/** @internal How a layer computes its forward when each row of the batch has its own adapter (lib/lora/mixed.ts). */
export interface RowAdapterForward {
  forward(layer: LoraLayer<Linear | Conv1D | Embedding>, input: Tensor): Tensor;
}

/** Holds one tensor as `weight`, so that factor keys read `lora_A.<adapter>.weight` as in PEFT. */
export class LoraFactor extends Module {
  constructor(public weight: Tensor) {
    super();
  }
}

/**
 * A factor on the base weight's device; in its dtype, except float32 on a half-precision base
 * unless `autocastAdapterDtype` is false: PEFT keeps adapters in float32 there, so that a
 * trained or loaded adapter is not rounded to 8 bits of mantissa before it is ever used.
 */
function newFactor(shape: number[], like: Tensor, how: AdapterInit): Tensor {
  const half = like.dtype === "float16" || like.dtype === "bfloat16";
  // keep(): a factor survives a tidy() around injection.
  return keep(empty(shape, { dtype: half && how.autocastAdapterDtype !== false ? "float32" : like.dtype, device: like.device }));
}

/** Adapter state shared by every LoRA layer type. */
export abstract class LoraLayer<Base extends Module & { weight: Tensor }> extends Module {
  base_layer: Base;
  readonly #settings = new Map<string, AdapterSettings>();
  #active: string[] = [];
  #disabled = false;
  #merged: string[] = [];
  /** The adapters of each merge call, in order (a half-precision merge rounds once per call). */
  #mergeCalls: string[][] = [];
  /** Pristine base weight kept while anything is merged: unmerge copies it back, bit for bit. */
  #backup: Tensor | null = null;
  /** Name of the async operation in flight, during which conflicting calls fail. */
  #busy: string | null = null;
  /** The adapters using DoRA (a set, so forward checks for none in O(1)). */
  readonly #dora = new Set<string>();
  /** How many withAdaptersDisabled scopes hold this layer; while > 0 its adapter state is frozen. */
  #holds = 0;
  /** What the outermost scope restores: the disabled flag, and the merged weight taken out. */
  #held: { disabled: boolean; mergedWeight: Tensor | null } | null = null;
  /** @internal Set inside LoraModel.withAdapterNames: forward then applies one adapter per row. */
  rowAdapters: RowAdapterForward | null = null;

  protected constructor(base: Base, accepts: (m: unknown) => boolean, expected: string) {
    super();
    if (!accepts(base)) throw new TypeError(`base: expected ${expected} to wrap, got ${describe(base)}`);
    this.base_layer = base;
  }

  /** "linear" or "embedding": which delta formula merges this layer. */
  protected abstract get kind(): "linear" | "embedding";
  /** True when the base weight is stored (in, out). */
  protected abstract get fanInFanOut(): boolean;
  /** The (A, B) factor tensors of an adapter. */
  abstract factors(name: string): [Tensor, Tensor];
  protected abstract createFactors(name: string, r: number, how: AdapterInit): void;
  /** Registers `A` and `B` as adapter `name`'s factors (the tensors themselves, not copies). */
  protected abstract setFactors(name: string, A: Tensor, B: Tensor): void;
  protected abstract removeFactors(name: string): void;
  /** The DoRA magnitude vectors, by adapter (PEFT's `lora_magnitude_vector.<adapter>.weight`). */
  protected abstract get magnitudes(): ModuleDict<LoraFactor>;

  /** Adds (or replaces) adapter `name` with rank `settings.r`, initialized as `how` says. */
  addAdapter(name: string, settings: AdapterSettings, how: AdapterInit): void {
    this.assertMutable("addAdapter");
    if (this.#merged.includes(name)) throw new StateError(`adapter "${name}" is merged; unmerge() before replacing it`);
    const weightAware = isWeightAwareInit(how.initLoraWeights) ? how.initLoraWeights : null;
    if (weightAware) checkWeightAwareInit(weightAware, "", this.kind, this.base_layer.weight.shape, settings.r);
    // The factors of an adapter being replaced: put back if the new ones cannot be initialized.
    const replaced = weightAware && this.#settings.has(name) ? this.factors(name) : null;
    this.createFactors(name, settings.r, how);
    if (weightAware) {
      // PiSSA/OLoRA rewrite the base weight; a failed decomposition writes nothing and leaves the factors of before.
      const [A, B] = this.factors(name);
      try {
        initFactorsFromWeight(weightAware, { weight: this.base_layer.weight, A, B, fanInFanOut: this.fanInFanOut, scale: settings.scale });
      } catch (err) {
        if (replaced) this.setFactors(name, ...replaced);
        else this.removeFactors(name);
        throw err;
      }
    }
    if (settings.useDora) {
      // m starts at ‖W + s·B·A‖ (after any weight-aware init), so step 0 gives the LoRA output.
      const m = doraInitialMagnitude(this.#doraTarget(name, settings.scale));
      m.requiresGrad = true;
      this.magnitudes.set(name, new LoraFactor(m));
      this.#dora.add(name);
    } else if (this.magnitudes.has(name)) {
      this.magnitudes.delete(name);
      this.#dora.delete(name);
    }
    this.#settings.set(name, { ...settings });
    if (this.#active.length === 0) this.#active = [name];
  }

  /**
   * @internal Used by hot swapping (lib/lora/hotswap.ts), after it has written the new factors in
   * place: records the new rank, scaling and dropout of adapter `name` without touching its tensors.
   */
  replaceSettings(name: string, settings: AdapterSettings): void {
    this.assertMutable("hotswap");
    if (!this.#settings.has(name)) throw noSuchAdapter(name, this.adapterNames, "adapterName", "this layer");
    this.#settings.set(name, { ...settings });
  }

  /** Removes adapter `name`; a merged adapter is refused (unmerge first). */
  deleteAdapter(name: string): void {
    this.assertMutable("deleteAdapter");
    if (!this.#settings.has(name)) return;
    if (this.#merged.includes(name)) throw new StateError(`cannot delete adapter "${name}": it is merged into the base weight; unmerge() first`);
    this.removeFactors(name);
    if (this.magnitudes.has(name)) this.magnitudes.delete(name);
    this.#dora.delete(name);
    this.#settings.delete(name);
    this.#active = this.#active.filter((n) => n !== name);
  }

  /** Names of the adapters this layer holds. */
  get adapterNames(): string[] {
    return [...this.#settings.keys()];
  }
  /** Settings of adapter `name`. */
  settings(name: string): AdapterSettings | undefined {
    const s = this.#settings.get(name);
    return s && { ...s };
  }
  /** Adapters that take part in forward (those this layer has). */
  get activeAdapters(): string[] {
    return this.#active.slice();
  }
  /** Adapters currently merged into the base weight. */
  get mergedAdapters(): string[] {
    return this.#merged.slice();
  }
  /**
   * @internal The adapters merged by each merge call, oldest first: re-merging them call by call
   * from the pristine weight reproduces the merged weight bit for bit.
   */
  get mergeCalls(): string[][] {
    return this.#mergeCalls.map((names) => names.slice());
  }
  /** Whether any adapter is merged. */
  get merged(): boolean {
    return this.#merged.length > 0;
  }
  /** Whether adapters are switched off (forward gives the base output). */
  get disabled(): boolean {
    return this.#disabled;
  }

  /** Makes `names` the active adapters (names this layer lacks are skipped, as in PEFT). */
  setActiveAdapters(names: string[]): void {
    this.assertMutable("setAdapter");
    this.#active = names.filter((n) => this.#settings.has(n));
  }

  /** Switches adapters off (unmerging first, as PEFT does) or back on. */
  setDisabled(disabled: boolean): void {
    this.assertMutable(disabled ? "disableAdapters" : "enableAdapters");
    if (disabled && this.merged) this.unmerge();
    this.#disabled = disabled;
  }

  /** The DoRA magnitude vector of adapter `name`, or null when it does not use DoRA. */
  magnitude(name: string): Tensor | null {
    return this.magnitudes.get(name)?.weight ?? null;
  }

  /** Every trainable tensor of adapter `name`: its factors and, with DoRA, its magnitude. */
  adapterParameters(name: string): Tensor[] {
    const m = this.magnitude(name);
    return m ? [...this.factors(name), m] : this.factors(name);
  }

  #doraTarget(name: string, scale: number): DoraTarget {
    const [A, B] = this.factors(name);
    return { weight: this.base_layer.weight, A, B, scale, fanInFanOut: this.fanInFanOut, embedding: this.kind === "embedding" };
  }

  /**
   * The DoRA adapter forward runs, when one of the active unmerged adapters uses DoRA. A DoRA
   * adapter runs alone: stacked with others, PEFT rescales their outputs by its magnitude too,
   * which this library does not reproduce.
   */
  protected activeDora(): { target: DoraTarget; magnitude: Tensor; dropout: number } | null {
    this.assertIdle("forward");
    // The common case costs one check on the hot path.
    if (this.#disabled || this.#dora.size === 0) return null;
    const running = this.#active.filter((n) => !this.#merged.includes(n));
    const dora = running.filter((n) => this.#settings.get(n)!.useDora);
    if (dora.length === 0) return null;
    if (running.length > 1) {
      throw new StateError(
        `forward: DoRA adapter "${dora[0]}" must be the only active adapter of its layer, but ${running.map((n) => `"${n}"`).join(", ")} are active; setAdapter("${dora[0]}") or merge the others`,
      );
    }
    const s = this.#settings.get(dora[0])!;
    return { target: this.#doraTarget(dora[0], s.scale), magnitude: this.magnitude(dora[0])!, dropout: s.dropout };
  }

  /** Merges `names` one after the other (a DoRA adapter renormalizes what is merged before it, as in PEFT). */
  *#mergeInOrder(names: string[], safe: boolean): TwinBody<Tensor | null> {
    let backup: Tensor | null = null;
    try {
      for (const name of names) {
        const s = this.#settings.get(name)!;
        const keepBackup = this.#backup === null && backup === null;
        let taken: NativeTensor | null;
        if (s.useDora) {
          const request = doraMergeRequest(this.#doraTarget(name, s.scale), this.magnitude(name)!, safe, keepBackup);
          taken = yield* step(
            () => loraNative.loraDoraMerge(request),
            () => loraNative.loraDoraMergeAsync(request),
          );
        } else {
          const [A, B] = this.factors(name);
          const request: LoraMergeOptions = { ...this.#mergeTarget(safe, keepBackup), factors: [handleOf(A), handleOf(B)], scales: [s.scale] };
          taken = yield* step(
            () => loraNative.loraMerge(request),
            () => loraNative.loraMergeAsync(request),
          );
        }
        if (keepBackup && taken) backup = new Tensor(taken);
      }
    } catch (err) {
      // All or nothing on this layer: put back the weight of before this call.
      if (backup) {
        loraNative.loraRestore(handleOf(this.base_layer.weight), handleOf(backup));
        backup.dispose();
      } else if (this.#backup) {
        throw new StateError(
          `merge: failed half-way on a layer that already had merged adapters (${(err as Error).message}); unmerge() to restore the base weight`,
        );
      }
      throw err;
    }
    return backup;
  }

  /** The active, unmerged adapters, as the native forward takes them (their names, for error messages). */
  protected forwardAdapters(): { names: string[]; factors: NativeTensor[]; scales: number[]; dropouts: number[] } {
    this.assertIdle("forward");
    const out = { names: [] as string[], factors: [] as NativeTensor[], scales: [] as number[], dropouts: [] as number[] };
    if (this.#disabled) return out;
    for (const name of this.#active) {
      if (this.#merged.includes(name)) continue;
      const [A, B] = this.factors(name);
      const s = this.#settings.get(name)!;
      out.names.push(name);
      out.factors.push(handleOf(A), handleOf(B));
      out.scales.push(s.scale);
      out.dropouts.push(s.dropout);
    }
    return out;
  }

  /** Adapters `names` with their factors, to word the error of a failed forward. */
  protected describeAdapters(names: string[]): ForwardAdapter[] {
    return names.map((name) => {
      const [A, B] = this.factors(name);
      return { name, A, B };
    });
  }

  /** The merge options that name this layer's weight and layout. */
  #mergeTarget(safe: boolean, keepBackup: boolean): Omit<LoraMergeOptions, "factors" | "scales"> {
    return { weight: handleOf(this.base_layer.weight), embedding: this.kind === "embedding", fanInFanOut: this.fanInFanOut, safe, keepBackup };
  }

  #mergePlan(options: MergeOptions): { names: string[]; safe: boolean } {
    optionsObject(options, "options");
    // A disabled layer gives the base output: a delta merged now would contradict that (and
    // forward would silently include it).
    if (this.#disabled) throw new StateError("merge: adapters are disabled on this layer; enableAdapters() before merging");
    const requested = options.adapterNames ?? this.#active;
    if (!Array.isArray(requested)) throw new TypeError(`adapterNames: expected an array of adapter names, got ${describe(requested)}`);
    for (const n of requested) {
      if (!this.#settings.has(n)) throw noSuchAdapter(n, this.adapterNames, "adapterNames", "this layer");
    }
    const names = requested.filter((n, i) => !this.#merged.includes(n) && requested.indexOf(n) === i);
    return { names, safe: options.safe ?? false };
  }

  #afterMerge(names: string[], backup: NativeTensor | Tensor | null): void {
    if (backup) this.#backup = backup instanceof Tensor ? backup : keep(new Tensor(backup));
    this.#merged.push(...names);
    this.#mergeCalls.push(names.slice());
  }

  /**
   * The body of {@link merge} and {@link mergeAsync}: checks, yields the one native merge (in
   * place or on a worker), and records it. With a DoRA adapter among them, the adapters merge one
   * native call each, in order. Conflicting calls on this layer fail while a native merge runs.
   */
  *#merging(options: MergeOptions): TwinBody<string[]> {
    this.assertMutable("merge");
    const plan = this.#mergePlan(options);
    if (plan.names.length === 0) return [];
    if (plan.names.some((n) => this.#settings.get(n)!.useDora)) {
      this.#busy = "merge";
      try {
        this.#afterMerge(plan.names, yield* this.#mergeInOrder(plan.names, plan.safe));
      } finally {
        this.#busy = null;
      }
      return plan.names;
    }
    const factors: NativeTensor[] = [];
    for (const name of plan.names) factors.push(...this.factors(name).map((f) => handleOf(f)));
    const scales = plan.names.map((name) => this.#settings.get(name)!.scale);
    this.#busy = "merge";
    try {
      const request: LoraMergeOptions = { ...this.#mergeTarget(plan.safe, this.#backup === null), factors, scales };
      this.#afterMerge(
        plan.names,
        yield* step(
          () => loraNative.loraMerge(request),
          () => loraNative.loraMergeAsync(request),
        ),
      );
    } catch (err) {
      explainMergeFailure(this.kind, this.describeAdapters(plan.names));
      throw err;
    } finally {
      this.#busy = null;
    }
    return plan.names;
  }

  /**
   * Adds the chosen adapters' deltas to the base weight. Already-merged adapters are skipped
   * (a no-op, never a double merge). Returns the names merged by this call.
   */
  merge(options: MergeOptions = {}): string[] {
    return runSync(this.#merging(options));
  }

  /** {@link merge} on a worker thread; conflicting calls on this layer fail until it settles. */
  mergeAsync(options: MergeOptions = {}): Promise<string[]> {
    return runAsync(this.#merging(options));
  }

  /** The body of {@link unmerge} and {@link unmergeAsync}: yields the native restore of the base weight, then drops the backup. */
  *#unmerging(): TwinBody<void> {
    this.assertMutable("unmerge");
    if (!this.#backup) return;
    this.#busy = "unmerge";
    try {
      const [weight, backup] = [handleOf(this.base_layer.weight), handleOf(this.#backup)];
      yield* step(
        () => loraNative.loraRestore(weight, backup),
        () => loraNative.loraRestoreAsync(weight, backup),
      );
      this.#dropBackup();
    } finally {
      this.#busy = null;
    }
  }

  /** Restores the base weight bit for bit (from the backup taken at the first merge). No-op when nothing is merged. */
  unmerge(): void {
    runSync(this.#unmerging());
  }

  /** {@link unmerge} on a worker thread. */
  unmergeAsync(): Promise<void> {
    return runAsync(this.#unmerging());
  }

  #dropBackup(): void {
    this.#backup?.dispose();
    this.#backup = null;
    this.#merged = [];
    this.#mergeCalls = [];
  }

  /**
   * Forgets the backup while keeping the merge: the base weight now owns the deltas
   * (used by mergeAndUnload, where there is nothing to unmerge later).
   */
  commitMerge(): void {
    this.assertMutable("mergeAndUnload");
    this.#dropBackup();
  }

  /** A merged layer holds a backup tied to the weight's dtype and device: moving it would break unmerge. */
  protected override checkMovable(): void {
    this.assertMutable("to");
    if (this.merged) throw new StateError("to: this layer has merged adapters; unmerge() before moving or casting the model");
  }

  /**
   * A merged layer's weight holds W + ΔW while the backup holds W: values loaded now would be
   * lost at unmerge (or merged twice), so loading waits until nothing is merged.
   */
  protected override checkLoadable(path: string): void {
    this.assertMutable("loadStateDict");
    if (this.merged) {
      const where = path ? `${path} has` : "this layer has";
      throw new StateError(`loadStateDict: ${where} merged adapters (${this.#merged.join(", ")}); unmerge() first, load, then merge() again`);
    }
  }

  /**
   * @internal Used by LoraModel.withAdaptersDisabled. Switches adapters off and takes any merged
   * delta out (an O(1) swap to the pristine weight, no copy) until the matching
   * {@link exitDisabledScope}. Scopes nest; only the outermost one changes anything. While held,
   * every call that would change the adapter state throws a StateError, so the state restored at
   * the end is exactly the state before, bit for bit.
   */
  enterDisabledScope(): void {
    this.assertIdle("withAdaptersDisabled");
    if (this.#holds++ > 0) return;
    let mergedWeight: Tensor | null = null;
    if (this.#backup) {
      mergedWeight = keep(this.base_layer.weight.detach()); // outlives a tidy() inside fn
      loraNative.loraRestore(handleOf(this.base_layer.weight), handleOf(this.#backup));
    }
    this.#held = { disabled: this.#disabled, mergedWeight };
    this.#disabled = true;
  }

  /** @internal Ends a scope opened by {@link enterDisabledScope}; the outermost one restores the state. */
  exitDisabledScope(): void {
    if (this.#holds === 0) throw new StateError("withAdaptersDisabled: no scope to end on this layer");
    if (--this.#holds > 0) return;
    const { disabled, mergedWeight } = this.#held!;
    this.#held = null;
    if (mergedWeight) {
      loraNative.loraRestore(handleOf(this.base_layer.weight), handleOf(mergedWeight));
      mergedWeight.dispose();
    }
    this.#disabled = disabled;
  }

  /** Throws a StateError when an async merge/unmerge is in flight on this layer. */
  assertIdle(operation: string): void {
    if (this.#busy) throw new StateError(`${operation}: an async ${this.#busy} is in flight on this layer; await it first`);
  }

  /** Throws a StateError when the adapter state may not change now: an async merge/unmerge is in flight, or withAdaptersDisabled holds it. */
  assertMutable(operation: string): void {
    this.assertIdle(operation);
    if (this.#holds > 0) {
      throw new StateError(
        `${operation}: not allowed inside withAdaptersDisabled(fn), which restores the adapter state of before the call when fn ends; call it after fn returns`,
      );
    }
  }

  /** The adapter's delta ΔW in the base weight's layout, in fp32 (for inspection and tests). */
  deltaWeight(name: string): Tensor {
    const [A, B] = this.factors(name);
    const s = this.#settings.get(name)!.scale;
    return tidy(() => {
      const d = B.detach()
        .to({ dtype: "float32" })
        .matmul(A.detach().to({ dtype: "float32" }))
        .mul(s);
      return this.kind === "embedding" || this.fanInFanOut ? d.t().contiguous() : d;
    });
  }
}

/** A Linear (or Conv1D) with LoRA adapters: `y = base(x) + Σ s·(dropout(x) Aᵀ) Bᵀ`, one native call. */
export class LoraLinear extends LoraLayer<Linear | Conv1D> {
  lora_A = new ModuleDict<LoraFactor>();
  lora_B = new ModuleDict<LoraFactor>();
  lora_magnitude_vector = new ModuleDict<LoraFactor>();

  constructor(base: Linear | Conv1D) {
    super(base, (m) => m instanceof Linear || m instanceof Conv1D, "an nn.Linear or nn.Conv1D");
  }
  protected get kind(): "linear" {
    return "linear";
  }
  protected get magnitudes(): ModuleDict<LoraFactor> {
    return this.lora_magnitude_vector;
  }
  protected get fanInFanOut(): boolean {
    return this.base_layer instanceof Conv1D;
  }
  factors(name: string): [Tensor, Tensor] {
    return [this.lora_A.get(name)!.weight, this.lora_B.get(name)!.weight];
  }
  protected createFactors(name: string, r: number, how: AdapterInit): void {
    const base = this.base_layer;
    const A = newFactor([r, base.inFeatures], base.weight, how);
    const B = newFactor([base.outFeatures, r], base.weight, how);
    if (how.initLoraWeights === false) {
      // PEFT leaves both factors at nn.Linear's default: the adapter is not a no-op.
      init.kaiming_uniform_(A, { a: Math.sqrt(5) });
      init.kaiming_uniform_(B, { a: Math.sqrt(5) });
    } else {
      if (how.initLoraWeights === "gaussian") init.normal_(A, 0, 1 / r);
      else init.kaiming_uniform_(A, { a: Math.sqrt(5) });
      init.zeros_(B);
    }
    A.requiresGrad = true;
    B.requiresGrad = true;
    this.setFactors(name, A, B);
  }
  protected setFactors(name: string, A: Tensor, B: Tensor): void {
    this.lora_A.set(name, new LoraFactor(A));
    this.lora_B.set(name, new LoraFactor(B));
  }
  protected removeFactors(name: string): void {
    this.lora_A.delete(name);
    this.lora_B.delete(name);
  }

  override forward(x: Tensor): Tensor {
    if (this.rowAdapters) return this.rowAdapters.forward(this, x);
    const base = this.base_layer;
    const dora = this.activeDora();
    if (dora) return doraLinear(x, dora.target, base.bias ?? null, dora.magnitude, this.training, dora.dropout);
    const input = handleOf(x, "input");
    const { names, factors, scales, dropouts } = this.forwardAdapters();
    const weight = handleOf(base.weight);
    const bias = base.bias ? handleOf(base.bias) : null;
    try {
      return new Tensor(loraNative.loraLinear({ input, weight, bias, fanInFanOut: this.fanInFanOut, training: this.training, factors, scales, dropouts }));
    } catch (err) {
      explainLinearFailure(x, base.weight, this.fanInFanOut, this.describeAdapters(names));
      throw err;
    }
  }
}

/** An Embedding with LoRA adapters: `y = W[ids] + Σ s·(Aᵀ[ids]) Bᵀ`, one native call. */
export class LoraEmbedding extends LoraLayer<Embedding> {
  lora_embedding_A = new ParameterDict();
  lora_embedding_B = new ParameterDict();
  lora_magnitude_vector = new ModuleDict<LoraFactor>();

  constructor(base: Embedding) {
    super(base, (m) => m instanceof Embedding, "an nn.Embedding");
  }
  protected get kind(): "embedding" {
    return "embedding";
  }
  protected get magnitudes(): ModuleDict<LoraFactor> {
    return this.lora_magnitude_vector;
  }
  protected get fanInFanOut(): boolean {
    return false;
  }
  factors(name: string): [Tensor, Tensor] {
    return [this.lora_embedding_A.get(name)!, this.lora_embedding_B.get(name)!];
  }
  protected createFactors(name: string, r: number, how: AdapterInit): void {
    const base = this.base_layer;
    const A = newFactor([r, base.numEmbeddings], base.weight, how);
    const B = newFactor([base.embeddingDim, r], base.weight, how);
    const std = how.embeddingInitStd;
    if (how.initLoraWeights === false) {
      init.normal_(A, 0, std);
      init.normal_(B, 0, std);
    } else if (how.embeddingInit === "b-normal") {
      // PEFT's and loralib's embedding scheme, for exact reproduction of a PEFT run.
      init.zeros_(A);
      init.normal_(B, 0, std);
    } else {
      init.normal_(A, 0, std);
      init.zeros_(B);
      // The lookup reads A's padding column and padding_idx only blocks its gradient: a random
      // column there would let training move the padding token's embedding.
      if (base.paddingIdx !== null) init.zeros_(A.narrow(1, base.paddingIdx, 1));
    }
    A.requiresGrad = true;
    B.requiresGrad = true;
    this.setFactors(name, A, B);
  }
  protected setFactors(name: string, A: Tensor, B: Tensor): void {
    this.lora_embedding_A.set(name, A);
    this.lora_embedding_B.set(name, B);
  }
  protected removeFactors(name: string): void {
    this.lora_embedding_A.delete(name);
    this.lora_embedding_B.delete(name);
  }

  override forward(ids: Tensor): Tensor {
    if (this.rowAdapters) return this.rowAdapters.forward(this, ids);
    const base = this.base_layer;
    const dora = this.activeDora();
    if (dora) return doraEmbedding(ids, dora.target, base.paddingIdx, dora.magnitude);
    const handle = handleOf(ids, "ids");
    const { names, factors, scales } = this.forwardAdapters();
    try {
      return new Tensor(loraNative.loraEmbedding({ ids: handle, weight: handleOf(base.weight), paddingIdx: base.paddingIdx ?? -1, factors, scales }));
    } catch (err) {
      explainEmbeddingFailure(ids, base.weight, this.describeAdapters(names));
      throw err;
    }
  }
}
