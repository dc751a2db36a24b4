/**
 * Runs every initialization strategy of a comparison task under several seeds and collects the
 * loss curves, the evaluation losses before and after fine-tuning, and the time per step.
 */
import { Tensor, lora, manualSeed, nn } from "../lib";
import type { Strategy } from "./init-strategies";

/** The steps whose training loss the table reports (besides the last). */
export const EARLY_STEPS = [10, 25];

/** One fine-tuning run: one strategy, one seed. */
export interface InitRun {
  /** Training loss after each step (index 0: step 1). */
  curve: number[];
  /** Evaluation loss of the freshly injected model, before any step. */
  evalBefore: number;
  /** Evaluation loss after the last step. */
  evalAfter: number;
  msPerStep: number;
}

/** A fine-tuning task whose base model is pretrained once and shared by every run. */
export interface ComparisonTask {
  /** Short name, used for output folders ("demo", "gpt"). */
  readonly id: string;
  /** The chart's title. */
  readonly title: string;
  readonly strategies: Strategy[];
  /** The table's caption: model, LoRA settings, optimizer, steps and seeds. */
  caption(steps: number, seeds: number): string;
  /** Injects `strategy` into a fresh copy of the base with seed `seed` and fine-tunes it for `steps` steps. */
  run(strategy: Strategy, seed: number, steps: number): InitRun;
}

/** What {@link fineTuneRun} needs of a task: a fresh model, its pretrained state, how to evaluate and train it. */
export interface FineTuneSetup<M extends nn.Module> {
  fresh(): M;
  baseState: Record<string, Tensor>;
  lora: { r: number; loraAlpha: number };
  evaluate(lm: lora.LoraModel<M>): number;
  /** Trains for the run's steps in the same data order every time, calling `onStep` with each step's loss. */
  train(lm: lora.LoraModel<M>, onStep: (step: number, loss: number) => void): void;
}

/**
 * One run of {@link ComparisonTask.run}: the base reloaded into a fresh model, `strategy`
 * injected under `seed`, then fine-tuned. Every strategy and seed sees the same base and data
 * order: only the initialization differs.
 */
export function fineTuneRun<M extends nn.Module>(setup: FineTuneSetup<M>, strategy: Strategy, seed: number, steps: number): InitRun {
  const model = setup.fresh();
  model.loadStateDict(setup.baseState);
  manualSeed(1000 + seed);
  const lm = lora.injectAdapter(model, { ...setup.lora, targetModules: strategy.targets, ...strategy.config });
  const evalBefore = setup.evaluate(lm);
  const curve: number[] = [];
  const t0 = process.hrtime.bigint();
  setup.train(lm, (_step, loss) => curve.push(loss));
  const msPerStep = Number(process.hrtime.bigint() - t0) / 1e6 / steps;
  return { curve, evalBefore, evalAfter: setup.evaluate(lm), msPerStep };
}

/** Every run of one strategy, one entry per seed. */
export interface StrategyRuns {
  strategy: Strategy;
  runs: InitRun[];
}

export interface Comparison {
  task: ComparisonTask;
  steps: number;
  seeds: number;
  results: StrategyRuns[];
}

/** Runs each strategy of `task` with seeds 0 … seeds-1; `log` receives one line per strategy. */
export function compareInits(task: ComparisonTask, options: { steps: number; seeds: number; log?: (line: string) => void }): Comparison {
  const { steps, seeds } = options;
  if (!Number.isInteger(seeds) || seeds < 1) throw new RangeError(`compareInits: seeds: expected a positive integer, got ${seeds}`);
  const least = Math.max(...EARLY_STEPS);
  if (!Number.isInteger(steps) || steps < least) throw new RangeError(`compareInits: steps: expected an integer >= ${least}, got ${steps}`);
  const results = task.strategies.map((strategy) => {
    const runs = Array.from({ length: seeds }, (_, seed) => task.run(strategy, seed, steps));
    options.log?.(
      `  ${strategy.name.padEnd(26)} eval loss before ${runs[0].evalBefore.toFixed(3)}, after ${steps} steps ${runs[0].evalAfter.toFixed(3)} (seed 0)`,
    );
    return { strategy, runs };
  });
  return { task, steps, seeds, results };
}
