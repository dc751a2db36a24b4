/**
 * The tiny GPT's task for `npm run compare-inits`: the GPT of examples/tiny-gpt.ts pretrained on
 * task A (its own pretraining, shared by every run), then LoRA fine-tuned on task B with the
 * adapters on every attention and MLP projection of both blocks (and on the token embedding for
 * the strategies that adapt embeddings). The weight-aware inits thus decompose trained weights.
 */
import { tensor } from "../lib";
import { CONFIG, TinyGPT, evaluate, lmLoss, pretrain, schedule, windows } from "../examples/tiny-gpt";
import { fineTuneRun } from "./compare-runner";
import type { ComparisonTask } from "./compare-runner";
import { prng } from "./data";
import type { Examples } from "./data";
import { initStrategies } from "./init-strategies";
import { train } from "./train";

/** Every Linear of a block: q, k, v and output projections, MLP up (fc) and down (proj). */
const PROJECTIONS = ["q_proj", "k_proj", "v_proj", "out_proj", "fc", "proj"];
const LORA = { r: 8, loraAlpha: 16 };
const LR = 1e-2;

/**
 * The windows in one fixed shuffled order (Fisher–Yates over a seeded PRNG). Consecutive windows
 * overlap all but one character, so a batch of them would see a few dozen characters and the
 * loss curves would jump from batch to batch; shuffled, each batch mixes the whole text.
 */
function shuffled(data: Examples, seed: number): Examples {
  const rand = prng(seed);
  const order = Array.from({ length: data.count }, (_, i) => i);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  const index = tensor(order, { dtype: "int64" });
  return { inputs: data.inputs.indexSelect(0, index), targets: data.targets.indexSelect(0, index), count: data.count };
}

export interface GptTaskOptions {
  /** The tiny GPT example's short schedule (60 pretraining steps, batches of 16) instead of its full one. */
  quick?: boolean;
}

/** Pretrains the base GPT (seeded: the same base every time) and returns the task. */
export function gptTask(options: GptTaskOptions = {}): ComparisonTask {
  const quick = options.quick ?? false;
  const s = schedule(quick);
  const base = pretrain(quick);
  const baseState = base.stateDict();
  const trainB = shuffled(windows("B", s.sentences, 2), 5);
  const evalB = windows("B", 60, 3);

  return {
    id: "gpt",
    title: "Tiny GPT, LoRA fine-tuning loss by initialization",
    strategies: initStrategies({ all: [...PROJECTIONS, "tok"], linear: PROJECTIONS }),
    caption: (steps, seeds) =>
      `Fine-tuning the tiny GPT (examples/tiny-gpt.ts: ${CONFIG.layers} blocks, dim ${CONFIG.dim}, context ${CONFIG.context}; ` +
      `pretrained ${s.pretrainSteps} steps on task A) on task B, adapters on ${PROJECTIONS.join(", ")} (and tok where embeddings are adapted): ` +
      `r = ${LORA.r}, alpha = ${LORA.loraAlpha}, AdamW lr ${LR}, batch ${s.batchSize}, ${steps} steps, ${seeds} seeds (mean ± std).`,
    run: (strategy, seed, steps) =>
      fineTuneRun(
        {
          fresh: () => new TinyGPT(CONFIG),
          baseState,
          lora: LORA,
          evaluate: (lm) => evaluate(lm, evalB),
          train: (lm, onStep) =>
            train(lm, trainB, {
              steps,
              batchSize: s.batchSize,
              lr: LR,
              label: strategy.name,
              quiet: true,
              loss: (m, batch) => lmLoss(m, batch.inputs),
              onStep,
            }),
        },
        strategy,
        seed,
        steps,
      ),
  };
}
