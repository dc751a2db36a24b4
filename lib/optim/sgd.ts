/**
 * Stochastic gradient descent with the arithmetic of torch.optim.SGD: weight decay added to the
 * gradient, momentum with dampening, optional Nesterov momentum.
 */
import type { NativeTensor } from "../binding";
import type { Tensor } from "../tensor";
import { finite, flag, nonNegative, options as checkOptions } from "./checks";
import { Optimizer, checkStateDictType, checkStateList } from "./optimizer";
import { optimNative } from "./native";

/** Options of {@link SGD}; `lr` is required, the other defaults are PyTorch's. */
export interface SGDOptions {
  /** Learning rate (required). */
  lr: number;
  /** Momentum factor (default 0). */
  momentum?: number;
  /** Dampening for momentum (default 0). */
  dampening?: number;
  /** L2 penalty added to the gradient (default 0). */
  weightDecay?: number;
  /** Nesterov momentum; needs momentum > 0 and dampening 0 (default false). */
  nesterov?: boolean;
  /** Maximize the objective instead of minimizing it (default false). */
  maximize?: boolean;
}

/** The hyper-parameters of an {@link SGD}, all resolved. */
export type SGDHyperParams = Required<SGDOptions>;

/** Saved state of one parameter (null until it first had a gradient). */
export interface SGDParamState {
  /** Number of steps this parameter took. */
  step: number;
  /** The momentum buffer; null when momentum is 0. */
  momentumBuffer: Tensor | null;
}

/** What {@link SGD.stateDict} returns and {@link SGD.loadStateDict} accepts. */
export interface SGDStateDict {
  type: "SGD";
  options: SGDHyperParams;
  /** One entry per parameter, in parameter order. */
  state: (SGDParamState | null)[];
}

const KNOWN = ["lr", "momentum", "dampening", "weightDecay", "nesterov", "maximize"] as const;

function resolve(value: unknown, where: string): SGDHyperParams {
  if (value === undefined || (typeof value === "object" && value !== null && !("lr" in value))) {
    throw new TypeError(`${where}.lr: the learning rate is required for SGD (there is no default)`);
  }
  const o = checkOptions<SGDOptions>(value, KNOWN, where);
  const resolved: SGDHyperParams = {
    lr: nonNegative(o.lr, `${where}.lr`),
    momentum: nonNegative(o.momentum ?? 0, `${where}.momentum`),
    dampening: finite(o.dampening ?? 0, `${where}.dampening`),
    weightDecay: nonNegative(o.weightDecay ?? 0, `${where}.weightDecay`),
    nesterov: flag(o.nesterov ?? false, `${where}.nesterov`),
    maximize: flag(o.maximize ?? false, `${where}.maximize`),
  };
  if (resolved.nesterov && (resolved.momentum <= 0 || resolved.dampening !== 0)) {
    throw new RangeError(
      `${where}.nesterov: Nesterov momentum needs momentum > 0 and dampening = 0, got momentum ${resolved.momentum} and dampening ${resolved.dampening}`,
    );
  }
  return resolved;
}

/**
 * The SGD optimizer. Each {@link step} is one native call over all parameters; parameters
 * without a gradient are skipped, as in PyTorch.
 *
 * @example
 * const opt = new optim.SGD(params, { lr: 0.1, momentum: 0.9, nesterov: true });
 */
export class SGD extends Optimizer {
  #o: SGDHyperParams;
  #buffers: NativeTensor[];

  /**
   * @param params The tensors to optimize: distinct floating-point leaf tensors.
   * @param options Hyper-parameters; `lr` is required.
   */
  constructor(params: Tensor[] | Iterable<Tensor>, options: SGDOptions) {
    const o = resolve(options, "SGD: options");
    super(params, o.lr, "SGD");
    this.#o = o;
    // A buffer is used only once its parameter's step count is above 0: the first step fills it
    // with the gradient, which is PyTorch's lazily created clone.
    this.#buffers = o.momentum !== 0 ? optimNative.optimZerosLike(this.handles) : [];
  }

  /** Momentum factor. */
  get momentum(): number {
    return this.#o.momentum;
  }
  /** Momentum dampening. */
  get dampening(): number {
    return this.#o.dampening;
  }
  /** L2 penalty coefficient. */
  get weightDecay(): number {
    return this.#o.weightDecay;
  }
  /** Whether Nesterov momentum is used. */
  get nesterov(): boolean {
    return this.#o.nesterov;
  }
  /** Whether the objective is maximized. */
  get maximize(): boolean {
    return this.#o.maximize;
  }

  /** One SGD update of every parameter that has a gradient (one native call). */
  step(): void {
    const o = this.#o;
    optimNative.sgdStep({
      params: this.handles,
      momentumBuffers: this.#buffers,
      steps: this.steps,
      lr: this.lr,
      momentum: o.momentum,
      dampening: o.dampening,
      weightDecay: o.weightDecay,
      nesterov: o.nesterov,
      maximize: o.maximize,
    });
  }

  /**
   * A snapshot for resuming: hyper-parameters (with the current lr) and per parameter its step
   * count and a copy of its momentum buffer (null entries for parameters that never had a gradient).
   */
  stateDict(): SGDStateDict {
    const state = Array.from(this.steps, (step, i): SGDParamState | null =>
      step === 0 ? null : { step, momentumBuffer: this.#o.momentum !== 0 ? Optimizer.snapshot(this.#buffers[i]) : null },
    );
    return { type: "SGD", options: { ...this.#o, lr: this.lr }, state };
  }

  /**
   * Restores a {@link stateDict} (hyper-parameters included). Everything is checked first; a
   * mismatch throws and changes nothing. Buffers are copied to each parameter's dtype and device.
   */
  loadStateDict(stateDict: SGDStateDict): void {
    const where = "loadStateDict";
    checkStateDictType(stateDict, "SGD", where);
    const o = resolve(stateDict.options, `${where}: options`);
    const entries = checkStateList(stateDict.state, this.tensors.length, `${where}: state`);
    const typed = entries as (SGDParamState | null)[];
    const steps = Optimizer.stepsFrom(typed, `${where}: state`);
    const buffers = o.momentum !== 0 ? optimNative.optimZerosLike(this.handles) : [];
    if (o.momentum !== 0) {
      typed.forEach((e, i) => {
        if (e === null || e.step === 0) return;
        if (e.momentumBuffer === null || e.momentumBuffer === undefined) {
          throw new TypeError(`${where}: state[${i}].momentumBuffer: missing, but momentum is ${o.momentum} and the parameter took ${e.step} steps`);
        }
        buffers[i] = this.stateCopy(e.momentumBuffer, i, `${where}: state[${i}].momentumBuffer`);
      });
    }
    this.#o = o;
    this.lr = o.lr;
    this.steps = steps;
    this.#buffers = buffers;
  }
}
