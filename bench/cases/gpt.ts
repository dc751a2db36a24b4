/**
 * The small GPT of gpt-fixture.ts (4 layers, d 256, T 128, batch 8, LoRA r 8 on attention):
 * a training step (forward, cross-entropy, backward, AdamW, zeroGrad) and a no-grad forward,
 * each once with every tensor left to the garbage collector and once with scopes (the step in
 * tidy(), each block in its own). The report adds the collection time per step (V8's GC
 * profiler) to each torch-lora row.
 */
import { AdamW } from "../../lib/optim/adamw";
import { tidy } from "../../lib/scope";
import { noGrad } from "../../lib/tensor";
import { BenchCase } from "../types";
import { GPT, gptSetup } from "./gpt-fixture";

const LABEL = `${GPT.layers}L d${GPT.dim} T${GPT.context} b${GPT.batch}`;
const PY_SETUP = "from gpt_reference import setup\ntrain_step, forward = setup()";

function trainStep(scoped: boolean): () => void {
  const { model, loss } = gptSetup({ scopePerBlock: scoped });
  const opt = new AdamW(model.trainableParameters(), { lr: 1e-4 });
  return () => {
    const l = loss();
    l.backward();
    opt.step();
    opt.zeroGrad();
  };
}

function forward(scoped: boolean): () => void {
  const { model, ids } = gptSetup({ scopePerBlock: scoped });
  return () => void noGrad(() => model.forward(ids));
}

const shared = { group: "Small GPT (LoRA on attention)", batchMs: 300, batches: 5, itemsPerCall: GPT.batch * GPT.context } as const;

export const gptCases: BenchCase[] = [
  { ...shared, name: `gpt ${LABEL} train step, left to GC`, js: () => trainStep(false), python: { setup: PY_SETUP, stmt: "train_step()" } },
  {
    ...shared,
    name: `gpt ${LABEL} train step, tidy`,
    quick: true,
    js: () => {
      const step = trainStep(true);
      return () => tidy(step);
    },
    python: { setup: PY_SETUP, stmt: "train_step()" },
  },
  { ...shared, name: `gpt ${LABEL} forward, left to GC`, js: () => forward(false), python: { setup: PY_SETUP, stmt: "forward()" } },
  {
    ...shared,
    name: `gpt ${LABEL} forward, tidy`,
    quick: true,
    js: () => {
      const fwd = forward(true);
      return () => tidy(fwd);
    },
    python: { setup: PY_SETUP, stmt: "forward()" },
  },
];
