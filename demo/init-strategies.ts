/** The LoRA initialization strategies `npm run compare-inits` compares, on any model. */
import type { lora } from "../lib";

/** One initialization strategy under comparison. */
export interface Strategy {
  name: string;
  config: Partial<lora.LoraConfig>;
  /** Adapted modules (default: every target of the task, embeddings included). */
  targets?: string[];
}

/** A task's adapted modules: all of them, and the Linear ones alone. */
export interface StrategyTargets {
  all: string[];
  linear: string[];
}

/**
 * The strategies, the same on every task: the embedding inits and DoRA adapt every target; the
 * weight-aware inits (PiSSA, OLoRA, orthogonal) are defined for Linear layers only, so they adapt
 * the Linear targets, and "default, Linear only" is their baseline with the same targets.
 */
export function initStrategies(targets: StrategyTargets): Strategy[] {
  const linear = targets.linear;
  const strategies: Strategy[] = [
    { name: "a-normal std 1 (default)", config: {} },
    { name: "b-normal std 1 (PEFT)", config: { embeddingInit: "b-normal" } },
    { name: "a-normal std 0.1", config: { embeddingInitStd: 0.1 } },
    { name: "a-normal std 0.01", config: { embeddingInitStd: 0.01 } },
    { name: 'Linear "gaussian"', config: { initLoraWeights: "gaussian" } },
    { name: "DoRA (default init)", config: { useDora: true } },
    { name: "default, Linear only", config: {}, targets: linear },
    { name: "PiSSA, Linear only", config: { initLoraWeights: "pissa" }, targets: linear },
    { name: "PiSSA niter 4, Linear only", config: { initLoraWeights: "pissa_niter_4" }, targets: linear },
    { name: "OLoRA, Linear only", config: { initLoraWeights: "olora" }, targets: linear },
    { name: "orthogonal, Linear only", config: { initLoraWeights: "orthogonal" }, targets: linear },
  ];
  return strategies.map((s) => ({ ...s, targets: s.targets ?? targets.all }));
}
