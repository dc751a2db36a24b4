/**
 * Learning-rate schedules: multiplier functions of the step number, and {@link LRScheduler},
 * which applies one to an optimizer's base learning rate (as torch.optim.lr_scheduler.LambdaLR).
 */
import { describe } from "../errors";
import { beta, count, options as checkOptions } from "./checks";

/** A schedule: the learning-rate multiplier at a step number (0, 1, 2, ...). */
export type LrLambda = (step: number) => number;

/** Options of {@link linearWarmupCosine}. */
export interface WarmupCosineOptions {
  /** Steps of linear warm-up from 0 to 1 (may be 0). */
  warmupSteps: number;
  /** Step at which the cosine decay reaches its floor; must be >= warmupSteps. */
  totalSteps: number;
  /** The floor of the decay as a fraction of the base learning rate, in [0, 1) (default 0). */
  minLrRatio?: number;
}

/**
 * Linear warm-up then cosine decay: the multiplier is `step / warmupSteps` during warm-up, then
 * `minLrRatio + (1 - minLrRatio) · (1 + cos(π · progress)) / 2` with
 * `progress = (step - warmupSteps) / (totalSteps - warmupSteps)`, held at `minLrRatio` after
 * `totalSteps` (the schedule of Hugging Face's `get_cosine_schedule_with_warmup`, with a floor).
 *
 * @returns A function from step number to multiplier.
 */
export function linearWarmupCosine(options: WarmupCosineOptions): LrLambda {
  if (options === undefined) throw new TypeError("options: expected { warmupSteps, totalSteps, minLrRatio? }, got undefined");
  const o = checkOptions<WarmupCosineOptions>(options, ["warmupSteps", "totalSteps", "minLrRatio"], "options");
  const warmup = count(o.warmupSteps, "options.warmupSteps");
  const total = count(o.totalSteps, "options.totalSteps");
  const floor = beta(o.minLrRatio ?? 0, "options.minLrRatio");
  if (total < warmup) throw new RangeError(`options.totalSteps: expected >= warmupSteps (${warmup}), got ${total}`);
  return (step: number): number => {
    count(step, "step");
    if (step < warmup) return step / warmup;
    const progress = total === warmup ? 1 : Math.min(1, (step - warmup) / (total - warmup));
    return floor + (1 - floor) * 0.5 * (1 + Math.cos(Math.PI * progress));
  };
}

/** Anything with a settable learning rate (every optimizer of this module). */
export interface HasLr {
  lr: number;
}

/**
 * Sets `optimizer.lr = baseLr · lambda(step)`. As in PyTorch's LambdaLR, constructing it applies
 * step 0, and each {@link step} (called after the optimizer's step) advances by one.
 *
 * @example
 * const sched = new optim.LRScheduler(opt, optim.linearWarmupCosine({ warmupSteps: 100, totalSteps: 1000 }));
 * for (...) { loss.backward(); opt.step(); opt.zeroGrad(); sched.step(); }
 */
export class LRScheduler {
  readonly #optimizer: HasLr;
  readonly #lambda: LrLambda;
  #baseLr: number;
  #lastStep = 0;
  #lastLr = 0;

  /**
   * @param optimizer The optimizer whose `lr` to drive; its current lr becomes the base lr.
   * @param lrLambda Multiplier of the base lr at each step; must return a finite number >= 0.
   */
  constructor(optimizer: HasLr, lrLambda: LrLambda) {
    if (typeof optimizer !== "object" || optimizer === null || typeof optimizer.lr !== "number") {
      throw new TypeError(`optimizer: expected an optimizer with a numeric lr, got ${describe(optimizer)}`);
    }
    if (typeof lrLambda !== "function") throw new TypeError(`lrLambda: expected a function, got ${describe(lrLambda)}`);
    this.#optimizer = optimizer;
    this.#lambda = lrLambda;
    this.#baseLr = optimizer.lr;
    this.#apply(0);
  }

  /** The learning rate the schedule is relative to. */
  get baseLr(): number {
    return this.#baseLr;
  }
  /** The step number last applied (0 right after construction). */
  get lastStep(): number {
    return this.#lastStep;
  }
  /** The learning rate last set on the optimizer. */
  get lastLr(): number {
    return this.#lastLr;
  }

  /** Advances one step and sets the optimizer's lr for it. */
  step(): void {
    this.#apply(this.#lastStep + 1);
  }

  /** The scheduler's position, for resuming. */
  stateDict(): { lastStep: number; baseLr: number } {
    return { lastStep: this.#lastStep, baseLr: this.#baseLr };
  }

  /** Restores a {@link stateDict} and sets the optimizer's lr for that step. */
  loadStateDict(state: { lastStep: number; baseLr: number }): void {
    const o = checkOptions<{ lastStep: number; baseLr: number }>(state, ["lastStep", "baseLr"], "state");
    const lastStep = count(o.lastStep, "state.lastStep");
    const baseLr = o.baseLr;
    if (typeof baseLr !== "number" || !Number.isFinite(baseLr) || baseLr < 0) {
      throw new RangeError(`state.baseLr: expected a finite number >= 0, got ${describe(baseLr)}`);
    }
    const previous = this.#baseLr;
    this.#baseLr = baseLr;
    try {
      this.#apply(lastStep);
    } catch (err) {
      this.#baseLr = previous;
      throw err;
    }
  }

  // The lr is computed and checked before anything is assigned, so a bad multiplier changes nothing.
  #apply(step: number): void {
    const m = this.#lambda(step);
    if (typeof m !== "number" || !Number.isFinite(m) || m < 0) {
      throw new RangeError(`lrLambda(${step}): expected a finite multiplier >= 0, got ${describe(m)}`);
    }
    const lr = this.#baseLr * m;
    this.#optimizer.lr = lr;
    this.#lastLr = lr;
    this.#lastStep = step;
  }
}
