/**
 * The small GPT-2 checkpoints of the pretrained-model cases (4 layers, n_embd 256, 4 heads), each
 * written once per benchmark run with `savePretrained` into a temporary folder, which both sides
 * load: torch-lora with `models.fromPretrained`, the PyTorch side with hf_reference.py's
 * `load_checkpoint`. Dropout is off (p = 0) so that a training step does the same work on both.
 */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { manualSeed, models } from "../../lib";

/** Shape of the small GPT-2: GPT-2's own vocab, or a small one where the head would hide the rest. */
export const SMALL_GPT2 = { n_layer: 4, n_embd: 256, n_head: 4, n_positions: 1024 } as const;

const written = new Map<number, string>();
let root: string | null = null;

/** The folder of the small GPT-2 with `vocab` tokens, written on first use and removed at exit. */
export async function smallGpt2Checkpoint(vocab: number): Promise<string> {
  const known = written.get(vocab);
  if (known) return known;
  if (root === null) {
    const made = fs.mkdtempSync(path.join(os.tmpdir(), "tl-bench-gpt2-"));
    root = made;
    process.on("exit", () => fs.rmSync(made, { recursive: true, force: true }));
  }
  const dir = path.join(root, `vocab-${vocab}`);
  manualSeed(0);
  const model = new models.GPT2LMHeadModel({
    model_type: "gpt2",
    ...SMALL_GPT2,
    vocab_size: vocab,
    resid_pdrop: 0,
    embd_pdrop: 0,
    attn_pdrop: 0,
  });
  await model.savePretrained(dir);
  for (const t of model.parameters()) t.dispose();
  written.set(vocab, dir);
  return dir;
}

/** Python's string literal for a path (JSON's escaping is valid Python). */
export const pyString = (s: string): string => JSON.stringify(s);
