/**
 * A pretrained-model LoRA training step: `models.GPT2LMHeadModel` loaded from a small GPT-2
 * checkpoint (4 layers, n_embd 256, 4 heads, T 128, batch 8), LoRA r 8 / alpha 16 on PEFT's
 * default gpt2 target (`c_attn`, a Conv1D), causal-LM loss, backward, AdamW, zeroGrad, the step
 * in tidy() as the library recommends; against bench/python/gpt2_lora_reference.py (transformers'
 * eager GPT-2 with PEFT-style LoRA) on the same checkpoint. The loss is `model.loss(ids)`, which
 * never builds the logits, as transformers' `model(ids, labels=ids).loss` is the reference's; a
 * row with the logits and `causalLmLoss` shows what that saves. With GPT-2's vocab of 50257 the
 * tied lm_head's GEMMs are most of the step, so a row with a 512-token vocab shows the rest.
 */
import { Tensor, lora, models, optim, tensor, tidy } from "../../lib";
import { BenchCase } from "../types";
import { SMALL_GPT2, pyString, smallGpt2Checkpoint } from "./gpt2-checkpoint";

const BATCH = 8;
const CONTEXT = 128;
const R = 8;

/** The fixed batch both sides train on: ((i·31 + 7) mod vocab) over batch × context positions. */
function batchIds(vocab: number): Tensor {
  const n = BATCH * CONTEXT;
  return tensor(
    Array.from({ length: n }, (_, i) => (i * 31 + 7) % vocab),
    { dtype: "int64", shape: [BATCH, CONTEXT] },
  );
}

function trainCase(vocab: number, label: string, quick: boolean, lossPath: "model.loss" | "logits + causalLmLoss" = "model.loss"): BenchCase {
  let dir = "";
  let model: models.CausalLM | null = null;
  let step: (() => void) | null = null;
  return {
    name: `gpt2 ${SMALL_GPT2.n_layer}L d${SMALL_GPT2.n_embd} T${CONTEXT} b${BATCH} LoRA c_attn train step (${lossPath}), ${label}`,
    group: "Pretrained GPT-2 (models.GPT2LMHeadModel, LoRA on c_attn)",
    quick,
    batchMs: 300,
    batches: vocab > 10000 ? 3 : 5,
    itemsPerCall: BATCH * CONTEXT,
    prepare: async () => {
      dir = await smallGpt2Checkpoint(vocab);
      model = await models.fromPretrained(dir);
    },
    // Built once (the harness asks twice: to calibrate, then to time): the adapter goes in once.
    js: () => {
      if (step) return step;
      const lm = lora.injectAdapter(model!.train(), { r: R, loraAlpha: 2 * R });
      const opt = new optim.AdamW(lm.trainableParameters(), { lr: 1e-4 });
      const ids = batchIds(vocab);
      step = () =>
        tidy(() => {
          const loss = lossPath === "model.loss" ? lm.model.loss(ids) : models.causalLmLoss(lm.forward(ids) as Tensor, ids);
          loss.backward();
          opt.step();
          opt.zeroGrad();
        });
      return step;
    },
    python: {
      // A getter: the checkpoint's folder is known once prepare has run.
      get setup() {
        return `from gpt2_lora_reference import setup\ntrain_step = setup(${pyString(dir)}, ${BATCH}, ${CONTEXT}, ${R}, ${2 * R})`;
      },
      stmt: "train_step()",
    },
  };
}

export const gpt2LoraCases: BenchCase[] = [
  trainCase(50257, "GPT-2 vocab 50257 (lm_head GEMMs dominate)", false),
  trainCase(50257, "GPT-2 vocab 50257 (lm_head GEMMs dominate)", false, "logits + causalLmLoss"),
  trainCase(512, "vocab 512 (binding overhead shows)", true),
];
