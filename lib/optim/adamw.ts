/**
 * AdamW (Loshchilov & Hutter), with the arithmetic of torch.optim.AdamW: decoupled weight decay
 * `p *= 1 - lr·wd`, bias-corrected moments, and eps added after `sqrt(v̂)`.
 */
import type { NativeTensor } from "../binding";
import type { Tensor } from "../tensor";
import { describe } from "../errors";
import { beta, flag, nonNegative, options as checkOptions } from "./checks";
import { Optimizer, checkStateDictType, checkStateList } from "./optimizer";
import { optimNative } from "./native";

/** Options of {@link AdamW}; the defaults are PyTorch's. */
export interface AdamWOptions {
  /** Learning rate (default 1e-3). */
  lr?: number;
  /** Coefficients of the running averages of the gradient and its square (default [0.9, 0.999]). */
  betas?: readonly [number, number];
  /** Added to the denominator for numerical stability (default 1e-8). */
  eps?: number;
  /** Decoupled weight decay coefficient (default 1e-2). */
  weightDecay?: number;
  /** Use the AMSGrad variant: the maximum of past second moments (default false). */
  amsgrad?: boolean;
  /** Maximize the objective instead of minimizing it (default false). */
  maximize?: boolean;
}

/** The hyper-parameters of an {@link AdamW}, all resolved. */
export type AdamWHyperParams = Required<AdamWOptions> & { betas: [number, number] };

/** Saved state of one parameter (absent, i.e. null, until it first had a gradient). */
export interface AdamWParamState {
  /** Number of steps this parameter took. */
  step: number;
  expAvg: Tensor;
  expAvgSq: Tensor;
  /** Present when amsgrad is on. */
  maxExpAvgSq?: Tensor;
}

/** What {@link AdamW.stateDict} returns and {@link AdamW.loadStateDict} accepts. */
export interface AdamWStateDict {
  type: "AdamW";
  options: AdamWHyperParams;
  /** One entry per parameter, in parameter order. */
  state: (AdamWParamState | null)[];
}

const KNOWN = ["lr", "betas", "eps", "weightDecay", "amsgrad", "maximize"] as const;

function resolve(value: unknown, where: string): AdamWHyperParams {
  const o = checkOptions<AdamWOptions>(value, KNOWN, where);
  const betas = o.betas ?? [0.9, 0.999];
  if (!Array.isArray(betas) || betas.length !== 2) {
    throw new TypeError(`${where}.betas: expected an array of two numbers, got ${describe(betas)}`);
  }
  return {
    lr: nonNegative(o.lr ?? 1e-3, `${where}.lr`),
    betas: [beta(betas[0], `${where}.betas[0]`), beta(betas[1], `${where}.betas[1]`)],
    eps: nonNegative(o.eps ?? 1e-8, `${where}.eps`),
    weightDecay: nonNegative(o.weightDecay ?? 1e-2, `${where}.weightDecay`),
    amsgrad: flag(o.amsgrad ?? false, `${where}.amsgrad`),
    maximize: flag(o.maximize ?? false, `${where}.maximize`),
  };
}

/**
 * The AdamW optimizer. Each {@link step} is one native call over all parameters; parameters
 * without a gradient are skipped, as in PyTorch.
 *
 * @example
 * const opt = new optim.AdamW(model.parameters(), { lr: 2e-4, weightDecay: 0 });
 * loss.backward(); opt.step(); opt.zeroGrad();
 */
export class AdamW extends Optimizer {
  #o: AdamWHyperParams;
  #expAvg: NativeTensor[];
  #expAvgSq: NativeTensor[];
  #maxExpAvgSq: NativeTensor[];

  /**
   * @param params The tensors to optimize: distinct floating-point leaf tensors.
   * @param options Hyper-parameters; see {@link AdamWOptions} for the defaults.
   */
  constructor(params: Tensor[] | Iterable<Tensor>, options: AdamWOptions = {}) {
    const o = resolve(options, "AdamW: options");
    super(params, o.lr, "AdamW");
    this.#o = o;
    // Zero state is what PyTorch creates lazily on a parameter's first step; with the step count
    // at 0 the result is identical, and allocating once keeps every step a single call.
    this.#expAvg = optimNative.optimZerosLike(this.handles);
    this.#expAvgSq = optimNative.optimZerosLike(this.handles);
    this.#maxExpAvgSq = o.amsgrad ? optimNative.optimZerosLike(this.handles) : [];
  }

  /** Coefficients of the running averages. */
  get betas(): [number, number] {
    return [this.#o.betas[0], this.#o.betas[1]];
  }
  /** Denominator stabilizer. */
  get eps(): number {
    return this.#o.eps;
  }
  /** Decoupled weight decay coefficient. */
  get weightDecay(): number {
    return this.#o.weightDecay;
  }
  /** Whether AMSGrad is used. */
  get amsgrad(): boolean {
    return this.#o.amsgrad;
  }
  /** Whether the objective is maximized. */
  get maximize(): boolean {
    return this.#o.maximize;
  }

  /** One AdamW update of every parameter that has a gradient (one native call). */
  step(): void {
    const o = this.#o;
    optimNative.adamwStep({
      params: this.handles,
      expAvg: this.#expAvg,
      expAvgSq: this.#expAvgSq,
      maxExpAvgSq: this.#maxExpAvgSq,
      steps: this.steps,
      lr: this.lr,
      beta1: o.betas[0],
      beta2: o.betas[1],
      eps: o.eps,
      weightDecay: o.weightDecay,
      amsgrad: o.amsgrad,
      maximize: o.maximize,
    });
  }

  /**
   * A snapshot of the optimizer for resuming: hyper-parameters (with the current lr), and per
   * parameter its step count and copies of its moment tensors (null for a parameter that never
   * had a gradient). Later steps do not change the snapshot.
   */
  stateDict(): AdamWStateDict {
    const state = Array.from(this.steps, (step, i): AdamWParamState | null => {
      if (step === 0) return null;
      const entry: AdamWParamState = {
        step,
        expAvg: Optimizer.snapshot(this.#expAvg[i]),
        expAvgSq: Optimizer.snapshot(this.#expAvgSq[i]),
      };
      if (this.#o.amsgrad) entry.maxExpAvgSq = Optimizer.snapshot(this.#maxExpAvgSq[i]);
      return entry;
    });
    return { type: "AdamW", options: { ...this.#o, betas: this.betas, lr: this.lr }, state };
  }

  /**
   * Restores a {@link stateDict} (hyper-parameters included). Everything is checked first, so a
   * mismatching state (other parameter count or shapes, missing tensors) throws and changes
   * nothing. Tensors are copied, converted to each parameter's dtype and device.
   */
  loadStateDict(stateDict: AdamWStateDict): void {
    const where = "loadStateDict";
    checkStateDictType(stateDict, "AdamW", where);
    const o = resolve(stateDict.options, `${where}: options`);
    const entries = checkStateList(stateDict.state, this.tensors.length, `${where}: state`);
    const typed = entries as (AdamWParamState | null)[];
    const steps = Optimizer.stepsFrom(typed, `${where}: state`);
    const fresh = (): NativeTensor[] => optimNative.optimZerosLike(this.handles);
    const expAvg = fresh();
    const expAvgSq = fresh();
    const maxExpAvgSq = o.amsgrad ? fresh() : [];
    typed.forEach((e, i) => {
      if (e === null) return;
      const at = `${where}: state[${i}]`;
      expAvg[i] = this.stateCopy(e.expAvg, i, `${at}.expAvg`);
      expAvgSq[i] = this.stateCopy(e.expAvgSq, i, `${at}.expAvgSq`);
      if (o.amsgrad) {
        if (e.maxExpAvgSq === undefined) throw new TypeError(`${at}.maxExpAvgSq: missing, but amsgrad is on`);
        maxExpAvgSq[i] = this.stateCopy(e.maxExpAvgSq, i, `${at}.maxExpAvgSq`);
      }
    });
    this.#o = o;
    this.lr = o.lr;
    this.steps = steps;
    this.#expAvg = expAvg;
    this.#expAvgSq = expAvgSq;
    this.#maxExpAvgSq = maxExpAvgSq;
  }
}
