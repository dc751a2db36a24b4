/**
 * The demo's task for `npm run compare-inits`: the character model of demo/model.ts pretrained
 * on task A, then LoRA fine-tuned on task B (adapting the embedding and both Linear layers).
 */
import { manualSeed } from "../lib";
import { fineTuneRun } from "./compare-runner";
import type { ComparisonTask } from "./compare-runner";
import { VOCAB, encode, generateText, makeExamples } from "./data";
import type { Task } from "./data";
import { initStrategies } from "./init-strategies";
import { CharModel } from "./model";
import { evaluate, train } from "./train";

const CONTEXT = 8;
const MODEL = { vocab: VOCAB, context: CONTEXT, embeddingDim: 24, hidden: 256 };
const LORA = { r: 8, loraAlpha: 16 };
const FINETUNE = { batchSize: 256, lr: 5e-3 };

/** Pretrains the base model (seeded: the same base every time) and returns the task. */
export function demoTask(): ComparisonTask {
  const examples = (task: Task, count: number, seed: number) => makeExamples(encode(generateText(task, count, seed)), CONTEXT);
  const trainB = examples("B", 1500, 3);
  const evalB = examples("B", 300, 4);
  manualSeed(0);
  const base = new CharModel(MODEL);
  train(base, examples("A", 4000, 1), { steps: 600, batchSize: 256, lr: 3e-3, label: "pretrain" });
  const baseState = base.stateDict();

  return {
    id: "demo",
    title: "Demo model, LoRA fine-tuning loss by initialization",
    strategies: initStrategies({ all: ["emb", "fc1", "fc2"], linear: ["fc1", "fc2"] }),
    caption: (steps, seeds) =>
      `Fine-tuning the demo model on task B: r = ${LORA.r}, alpha = ${LORA.loraAlpha}, AdamW lr ${FINETUNE.lr}, batch ${FINETUNE.batchSize}, ` +
      `${steps} steps, ${seeds} seeds (mean ± std).`,
    run: (strategy, seed, steps) =>
      fineTuneRun(
        {
          fresh: () => new CharModel(MODEL),
          baseState,
          lora: LORA,
          evaluate: (lm) => evaluate(lm, evalB),
          train: (lm, onStep) => train(lm, trainB, { ...FINETUNE, steps, label: strategy.name, quiet: true, onStep }),
        },
        strategy,
        seed,
        steps,
      ),
  };
}
