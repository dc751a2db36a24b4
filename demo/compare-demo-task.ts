/**
 * The demo's task for `npm run compare-inits`: the character model of demo/model.ts pretrained
 * on task A, then LoRA fine-tuned on task B (adapting the embedding and both Linear layers).
 */
import { lora, manualSeed } from "../lib";
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
    run(strategy, seed, steps) {
      const model = new CharModel(MODEL);
      model.loadStateDict(baseState);
      manualSeed(1000 + seed);
      const lm = lora.injectAdapter(model, { ...LORA, targetModules: strategy.targets, ...strategy.config });
      const evalBefore = evaluate(lm, evalB);
      const curve: number[] = [];
      // Same data order for every strategy and seed: only the initialization differs.
      const t0 = process.hrtime.bigint();
      train(lm, trainB, { ...FINETUNE, steps, label: strategy.name, quiet: true, onStep: (_s, loss) => curve.push(loss) });
      const msPerStep = Number(process.hrtime.bigint() - t0) / 1e6 / steps;
      return { curve, evalBefore, evalAfter: evaluate(lm, evalB), msPerStep };
    },
  };
}
