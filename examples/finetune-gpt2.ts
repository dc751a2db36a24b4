/**
 * The pretrained-model workflow end to end, on a GPT-2 small enough to train here in seconds:
 *
 * 1. a tiny GPT-2 checkpoint in Hugging Face's folder layout (config.json, model.safetensors and a
 *    byte-level tokenizer.json written here, nothing downloaded), pretrained on the demo's task-A
 *    text and written with `savePretrained`;
 * 2. loaded back with `models.fromPretrained` and LoRA fine-tuned on task B (PEFT's default target
 *    for gpt2, `c_attn`), with a progress bar;
 * 3. sampled generations before and after (tokenizer encode → `generate` → decode);
 * 4. the adapter saved in PEFT's layout, merged into the checkpoint with the command line
 *    (`torch-lora merge --base <folder>`), and the merged checkpoint's logits compared with the
 *    adapted model's.
 *
 * Run from the repository: npm run finetune-gpt2 (or node dist/examples/finetune-gpt2.js
 * [--quick] [--out <dir>]). In your own project, import from "torch-lora" instead of "../lib".
 */
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { Tensor, lora, manualSeed, models, noGrad, optim, tensor, tidy } from "../lib";
import { Examples, Task, batchAt, generateText, makeExamples } from "../demo/data";
import { Progress } from "../demo/progress";

/** The characters of the demo's text; the tokenizer has one token per character, plus end-of-text. */
const CHARACTERS = "abcdefghijklmnopqrstuvwxyz .";
const EOS = "<|endoftext|>";

/**
 * A byte-level tokenizer.json in GPT-2's style, with one token per character: GPT-2's
 * pre-tokenizer and decoder (a space is the byte-level character "Ġ") and a BPE model without
 * merges, so every character stays its own token.
 */
export function tokenizerJson(): object {
  const vocab: Record<string, number> = {};
  [...CHARACTERS].forEach((c, i) => (vocab[c === " " ? "Ġ" : c] = i));
  vocab[EOS] = CHARACTERS.length;
  const byteLevel = { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true };
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: [{ id: CHARACTERS.length, content: EOS, single_word: false, lstrip: false, rstrip: false, normalized: true, special: true }],
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: { ...byteLevel, trim_offsets: false },
    decoder: byteLevel,
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: "",
      end_of_word_suffix: "",
      fuse_unk: false,
      byte_fallback: false,
      vocab,
      merges: [],
    },
  };
}

/** The tokens GPT-2's tokenizer_config.json names, so `loadTokenizer` knows end-of-text. */
const TOKENIZER_CONFIG = { bos_token: EOS, eos_token: EOS, unk_token: EOS, model_max_length: 48, tokenizer_class: "GPT2Tokenizer" };

/** The checkpoint's config.json: GPT-2's architecture at a tiny size, without dropout. */
export const CONFIG = {
  model_type: "gpt2",
  architectures: ["GPT2LMHeadModel"],
  vocab_size: CHARACTERS.length + 1,
  n_positions: 48,
  n_embd: 64,
  n_layer: 2,
  n_head: 4,
  resid_pdrop: 0,
  embd_pdrop: 0,
  attn_pdrop: 0,
  bos_token_id: CHARACTERS.length,
  eos_token_id: CHARACTERS.length,
};

/** The LoRA settings: no targetModules, so PEFT's default for gpt2 (`c_attn`) applies. */
export const LORA = { r: 16, loraAlpha: 32 };

/**
 * Tokens per training window: every position the model has (n_positions), so that generation,
 * which goes up to the last one, uses only position embeddings that were trained.
 */
export const CONTEXT = CONFIG.n_positions;

/** Sizes of a full run and of the short one the tests use (`--quick`). */
export function schedule(quick: boolean) {
  return quick
    ? { pretrainSteps: 60, finetuneSteps: 40, batchSize: 16, sentences: 300, newTokens: 24 }
    : { pretrainSteps: 400, finetuneSteps: 300, batchSize: 32, sentences: 1200, newTokens: 38 };
}

/** Windows of `CONTEXT` tokens of generated text, tokenized with `tokenizer`, in `inputs` (N, CONTEXT). */
export function windows(tokenizer: models.PretrainedTokenizer, task: Task, sentences: number, seed: number): Examples {
  // makeExamples' inputs are windows of the length it is given (the id after each is unused here).
  return makeExamples(tokenizer.encode(generateText(task, sentences, seed)), CONTEXT);
}

/**
 * Evaluation text: `sentences` of task `task` cut into back-to-back windows of `CONTEXT` tokens,
 * (N, CONTEXT) int64 (training slides its windows one token at a time; evaluating each token once
 * is enough).
 */
export function evaluationWindows(tokenizer: models.PretrainedTokenizer, task: Task, sentences: number, seed: number): Tensor {
  const ids = tokenizer.encode(generateText(task, sentences, seed));
  const rows = Math.floor(ids.length / CONTEXT);
  return tensor(ids.slice(0, rows * CONTEXT), { dtype: "int64", shape: [rows, CONTEXT] });
}

/**
 * transformers' causal-LM loss of `model` on windows (B, T) int64: each token predicts the next.
 * `model.loss` never builds the (B, T, V) logits; with LoRA injected, the adapters act inside it.
 */
export function lmLoss(model: models.CausalLM, batch: Tensor): Tensor {
  return model.loss(batch);
}

/** The loss over a whole evaluation set (N, CONTEXT), without autograd. */
export function evaluate(model: models.CausalLM, data: Tensor): number {
  return noGrad(() => tidy(() => lmLoss(model, data).item()));
}

/** Trains `params` for `steps` AdamW steps on `data`, reporting on a progress bar called `label`. */
export function train(
  model: models.CausalLM,
  params: Tensor[],
  data: Examples,
  options: { steps: number; batchSize: number; lr: number; label: string },
): void {
  const opt = new optim.AdamW(params, { lr: options.lr, weightDecay: 0 });
  const progress = new Progress(options.label, options.steps);
  const tokens = options.batchSize * CONTEXT;
  let started = performance.now();
  for (let step = 1; step <= options.steps; step++) {
    // tidy frees the step's activations and loss at once; backward keeps what it needs itself.
    const loss = tidy(() => {
      const { inputs } = batchAt(data, (step * 7919) % data.count, options.batchSize);
      const l = lmLoss(model, inputs);
      l.backward();
      opt.step();
      opt.zeroGrad();
      return l.item();
    });
    const now = performance.now();
    progress.update(step, { loss, tokensPerSecond: (tokens * 1000) / Math.max(1e-3, now - started) });
    started = now;
  }
  progress.stop();
}

/** Writes the tokenizer files into the checkpoint folder `dir`. */
export function writeTokenizer(dir: string): void {
  fs.writeFileSync(path.join(dir, "tokenizer.json"), JSON.stringify(tokenizerJson()));
  fs.writeFileSync(path.join(dir, "tokenizer_config.json"), JSON.stringify(TOKENIZER_CONFIG, null, 2) + "\n");
}

/** Builds the tiny GPT-2, pretrains it on task A and writes it as a checkpoint folder `dir`. */
export async function pretrain(dir: string, quick: boolean): Promise<void> {
  const s = schedule(quick);
  manualSeed(0);
  // Initialized as transformers' GPT-2: weights N(0, 0.02²), the residual projections scaled down.
  const model = new models.GPT2LMHeadModel(CONFIG);
  const tokenizer = new models.PretrainedTokenizer(tokenizerJson(), TOKENIZER_CONFIG);
  train(model, model.parameters(), windows(tokenizer, "A", s.sentences, 1), {
    steps: s.pretrainSteps,
    batchSize: s.batchSize,
    lr: 3e-3,
    label: "pretrain (task A)",
  });
  await model.savePretrained(dir);
  // After savePretrained, which switches the whole folder in at once.
  writeTokenizer(dir);
}

/**
 * A sampled continuation of `prompt`: encode, generate `newTokens` tokens (temperature 0.6, top-k
 * 4, seeded, so a run repeats), decode. Greedy decoding of so small a model soon repeats itself.
 */
export function complete(model: models.CausalLM, tokenizer: models.PretrainedTokenizer, prompt: string, newTokens: number): string {
  const ids = tokenizer.encode(prompt);
  manualSeed(7);
  return tidy(() => {
    const out = model.generate(tensor(ids, { dtype: "int64", shape: [1, ids.length] }), { maxNewTokens: newTokens, temperature: 0.6, topK: 4 });
    return tokenizer.decode(out.reshape([-1]));
  });
}

/** The path of the package's command line (package.json's `bin`), next to this file in dist/. */
export const CLI = path.resolve(__dirname, "../lib/cli.js");

/** Runs `torch-lora merge --base <base> --adapter <adapter> --out <out>` in a child process. */
export function mergeWithCli(base: string, adapter: string, out: string): void {
  const r = spawnSync(process.execPath, [CLI, "merge", "--base", base, "--adapter", adapter, "--out", out], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`torch-lora merge exited with ${r.status ?? r.signal}: ${r.stderr.trim()}`);
}

function parseArgs(argv: string[]): { quick: boolean; out: string } {
  const quick = argv.includes("--quick");
  const at = argv.indexOf("--out");
  if (at >= 0 && (at + 1 >= argv.length || argv[at + 1].startsWith("--"))) throw new Error("--out: expected a folder after it");
  const out = at >= 0 ? path.resolve(argv[at + 1]) : fs.mkdtempSync(path.join(os.tmpdir(), "torch-lora-gpt2-"));
  return { quick, out };
}

async function main(): Promise<void> {
  const { quick, out } = parseArgs(process.argv.slice(2));
  const s = schedule(quick);
  const dirs = { base: path.join(out, "base"), adapter: path.join(out, "adapter"), merged: path.join(out, "merged") };
  fs.mkdirSync(out, { recursive: true });
  console.log(`writing into ${out}`);

  // 1. A checkpoint folder, as one downloaded from the Hub would be.
  await pretrain(dirs.base, quick);
  console.log(`checkpoint: ${fs.readdirSync(dirs.base).sort().join(", ")}`);

  // 2. Load it as any transformers checkpoint, and fine-tune LoRA on task B.
  const model = await models.fromPretrained(dirs.base);
  const tokenizer = models.loadTokenizer(dirs.base);
  const evalB = evaluationWindows(tokenizer, "B", 200, 3);
  const prompt = "the robot ";
  const before = evaluate(model, evalB);
  console.log(`task B loss before LoRA: ${before.toFixed(4)}`);
  console.log(`generated before: ${JSON.stringify(complete(model, tokenizer, prompt, s.newTokens))}`);

  manualSeed(1);
  const lm = lora.injectAdapter(model, LORA);
  console.log(lm.formatTrainableParameters());
  train(lm.model, lm.trainableParameters(), windows(tokenizer, "B", s.sentences, 2), {
    steps: s.finetuneSteps,
    batchSize: s.batchSize,
    lr: 1e-2,
    label: "LoRA (task B)",
  });
  const after = evaluate(lm.model, evalB);
  console.log(`task B loss after LoRA: ${after.toFixed(4)}`);
  // 3. The LoRA layers act inside generate's cached decoding too.
  console.log(`generated after: ${JSON.stringify(complete(model, tokenizer, prompt, s.newTokens))}`);

  // 4. PEFT's files, merged by the command line into a checkpoint of the same layout.
  lm.saveAdapter(dirs.adapter);
  mergeWithCli(dirs.base, dirs.adapter, dirs.merged);
  const merged = await models.fromPretrained(dirs.merged);
  const diff = noGrad(() => tidy(() => merged.forward(evalB).sub(lm.forward(evalB)).abs().max().item()));
  console.log(`merged checkpoint (${dirs.merged}): max |logits - adapted logits| = ${diff.toExponential(2)}`);
}

if (require.main === module) {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
