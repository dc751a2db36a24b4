/**
 * Batch-1 greedy decoding with the KV cache: `model.generate` of `models.GPT2LMHeadModel` on the
 * small GPT-2 checkpoint (4 layers, n_embd 256, GPT-2's vocab), a 16-token prompt and 32 new
 * tokens per call, against bench/python/gpt2_generate.py's loop (transformers' layer_past
 * decoding in PyTorch eager) on the same checkpoint and prompt. The report's tokens/s column is
 * the decoding rate; µs per call / 32 is the time per token.
 */
import { Tensor, models, tensor } from "../../lib";
import { BenchCase } from "../types";
import { SMALL_GPT2, pyString, smallGpt2Checkpoint } from "./gpt2-checkpoint";

const VOCAB = 50257;
const PROMPT = 16;
const NEW_TOKENS = 32;

function generateCase(): BenchCase {
  let dir = "";
  let model: models.CausalLM | null = null;
  return {
    name: `gpt2 ${SMALL_GPT2.n_layer}L d${SMALL_GPT2.n_embd} greedy generate, batch 1, prompt ${PROMPT}, ${NEW_TOKENS} new tokens per call (KV cache)`,
    group: "Pretrained GPT-2 (models.GPT2LMHeadModel, LoRA on c_attn)",
    quick: true,
    batchMs: 300,
    batches: 5,
    itemsPerCall: NEW_TOKENS,
    prepare: async () => {
      dir = await smallGpt2Checkpoint(VOCAB);
      model = await models.fromPretrained(dir);
    },
    js: () => {
      const prompt: Tensor = tensor([Array.from({ length: PROMPT }, (_, i) => (i * 97) % VOCAB)], { dtype: "int64" });
      return () => model!.generate(prompt, { maxNewTokens: NEW_TOKENS }).dispose();
    },
    python: {
      // A getter: the checkpoint's folder is known once prepare has run.
      get setup() {
        return `from gpt2_generate import make_generator\ngenerate = make_generator(${pyString(dir)}, ${PROMPT})`;
      },
      stmt: `generate(${NEW_TOKENS})`,
    },
  };
}

export const gpt2GenerateCases: BenchCase[] = [generateCase()];
