/**
 * Batch-1 greedy decoding with the KV cache: `model.generate` of `models.GPT2LMHeadModel` on the
 * small GPT-2 checkpoint (4 layers, n_embd 256, GPT-2's vocab), a 16-token prompt and 32 new
 * tokens per call, against bench/python/gpt2_generate.py's loop (transformers' layer_past
 * decoding in PyTorch eager) on the same checkpoint and prompt. The report's tokens/s column is
 * the decoding rate; µs per call / 32 is the time per token. Each token reads the whole tied
 * head (50257 × 256 floats, 51 MB), the same kernel on both sides; a second row with a 512-token
 * vocab shows the per-step cost of everything else.
 */
import { Tensor, models, tensor } from "../../lib";
import { BenchCase } from "../types";
import { SMALL_GPT2, pyString, smallGpt2Checkpoint } from "./gpt2-checkpoint";

const PROMPT = 16;
const NEW_TOKENS = 32;

function generateCase(vocab: number, label: string, quick: boolean): BenchCase {
  let dir = "";
  let model: models.CausalLM | null = null;
  return {
    name: `gpt2 ${SMALL_GPT2.n_layer}L d${SMALL_GPT2.n_embd} greedy generate (KV cache), batch 1, prompt ${PROMPT}, ${NEW_TOKENS} new tokens per call, ${label}`,
    group: "Pretrained GPT-2 (models.GPT2LMHeadModel, LoRA on c_attn)",
    quick,
    batchMs: 300,
    batches: 5,
    itemsPerCall: NEW_TOKENS,
    prepare: async () => {
      dir = await smallGpt2Checkpoint(vocab);
      model = await models.fromPretrained(dir);
    },
    js: () => {
      const prompt: Tensor = tensor([Array.from({ length: PROMPT }, (_, i) => (i * 97) % vocab)], { dtype: "int64" });
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

export const gpt2GenerateCases: BenchCase[] = [
  generateCase(50257, "GPT-2 vocab 50257 (the head's GEMV dominates)", false),
  generateCase(512, "vocab 512 (per-step overhead shows)", true),
];
