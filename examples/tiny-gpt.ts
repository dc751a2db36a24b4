/**
 * A small GPT written with the library's building blocks, pretrained on generated text, then
 * LoRA fine-tuned on a second task and sampled with temperature and top-k, before and after.
 *
 * The model is two pre-LayerNorm transformer blocks over characters: token and position
 * embeddings, causal multi-head self-attention (one fused `scaledDotProductAttention` call, heads
 * made by reshape + transpose), a GELU MLP, a final LayerNorm and an output head tied to the token
 * embedding. The text is the demo's (demo/data.ts): task A for pretraining, task B for LoRA.
 *
 * Run from the repository: npm run setup && node dist/examples/tiny-gpt.js [--quick]
 * In your own project, import from "torch-lora" instead of "../lib".
 */
import { Tensor, arange, crossEntropy, lora, manualSeed, nn, noGrad, optim, scaledDotProductAttention, tensor, tidy } from "../lib";
import { ALPHABET, VOCAB, batchAt, encode, generateText, makeExamples } from "../demo/data";
import type { Examples, Task } from "../demo/data";

/** The model's sizes. */
export interface TinyGPTConfig {
  vocab: number;
  /** The longest sequence the model reads (the position table's length). */
  context: number;
  dim: number;
  heads: number;
  layers: number;
}

export const CONFIG: TinyGPTConfig = { vocab: VOCAB, context: 32, dim: 64, heads: 4, layers: 2 };

/** Causal multi-head self-attention with separate q/k/v/out projections (LoRA targets q and v). */
export class CausalSelfAttention extends nn.Module {
  q_proj: nn.Linear;
  k_proj: nn.Linear;
  v_proj: nn.Linear;
  out_proj: nn.Linear;
  readonly heads: number;

  constructor(dim: number, heads: number) {
    super();
    if (dim % heads !== 0) throw new RangeError(`CausalSelfAttention: dim (${dim}) must be a multiple of heads (${heads})`);
    this.heads = heads;
    this.q_proj = new nn.Linear(dim, dim);
    this.k_proj = new nn.Linear(dim, dim);
    this.v_proj = new nn.Linear(dim, dim);
    this.out_proj = new nn.Linear(dim, dim);
  }

  /** x (B, T, C) → (B, T, C). */
  override forward(x: Tensor): Tensor {
    const [b, t, c] = x.shape;
    // (B, T, C) → (B, H, T, C/H): each head attends over its own slice of the channels.
    const heads = (y: Tensor) => y.reshape([b, t, this.heads, c / this.heads]).transpose(1, 2);
    const q = heads(this.q_proj.forward(x));
    const k = heads(this.k_proj.forward(x));
    const v = heads(this.v_proj.forward(x));
    // One native call: scores, causal mask (-inf above the diagonal), softmax, weighted sum.
    const y = scaledDotProductAttention(q, k, v, { causal: true });
    return this.out_proj.forward(y.transpose(1, 2).reshape([b, t, c]));
  }
}

/** The position-wise feed-forward network: dim → 4·dim → GELU → dim. */
export class MLP extends nn.Module {
  fc: nn.Linear;
  act = new nn.GELU();
  proj: nn.Linear;

  constructor(dim: number) {
    super();
    this.fc = new nn.Linear(dim, 4 * dim);
    this.proj = new nn.Linear(4 * dim, dim);
  }

  override forward(x: Tensor): Tensor {
    return this.proj.forward(this.act.forward(this.fc.forward(x)));
  }
}

/** A pre-LayerNorm transformer block: x + attn(ln1(x)), then + mlp(ln2(·)). */
export class Block extends nn.Module {
  ln1: nn.LayerNorm;
  attn: CausalSelfAttention;
  ln2: nn.LayerNorm;
  mlp: MLP;

  constructor(dim: number, heads: number) {
    super();
    this.ln1 = new nn.LayerNorm([dim]);
    this.attn = new CausalSelfAttention(dim, heads);
    this.ln2 = new nn.LayerNorm([dim]);
    this.mlp = new MLP(dim);
  }

  override forward(x: Tensor): Tensor {
    const h = x.add(this.attn.forward(this.ln1.forward(x)));
    return h.add(this.mlp.forward(this.ln2.forward(h)));
  }
}

/** The language model: ids (B, T) int64 → logits (B, T, vocab). */
export class TinyGPT extends nn.Module {
  tok: nn.Embedding;
  pos: nn.Embedding;
  blocks: nn.ModuleList<Block>;
  ln_f: nn.LayerNorm;
  head: nn.Linear;
  declare positions: Tensor; // a buffer (0, 1, ..., context-1): moved by to(), never trained
  readonly config: TinyGPTConfig;

  constructor(config: TinyGPTConfig = CONFIG) {
    super();
    this.config = config;
    this.tok = new nn.Embedding(config.vocab, config.dim);
    this.pos = new nn.Embedding(config.context, config.dim);
    this.blocks = new nn.ModuleList(Array.from({ length: config.layers }, () => new Block(config.dim, config.heads)));
    this.ln_f = new nn.LayerNorm([config.dim]);
    this.head = new nn.Linear(config.dim, config.vocab, { bias: false });
    // Tied weights, as GPT-2: one tensor under two names, trained once with both gradients.
    this.head.weight = this.tok.weight;
    this.registerBuffer("positions", arange(0, config.context, 1, { dtype: "int64" }), { persistent: false });
  }

  override forward(ids: Tensor): Tensor {
    const t = ids.shape[1];
    if (t > this.config.context)
      throw new RangeError(`TinyGPT.forward: ids: expected at most ${this.config.context} positions, got shape [${ids.shape.join(", ")}]`);
    let x = this.tok.forward(ids).add(this.pos.forward(this.positions.narrow(0, 0, t)));
    for (const block of this.blocks) x = block.forward(x);
    return this.head.forward(this.ln_f.forward(x));
  }
}

/**
 * Windows of `context + 1` characters of generated text, in `inputs` (N, context + 1): a window's
 * first `context` ids are the model's input, its last `context` the targets.
 */
export function windows(task: Task, sentences: number, seed: number, context = CONFIG.context): Examples {
  // makeExamples' inputs are windows of the length it is given (the id after each is unused here).
  return makeExamples(encode(generateText(task, sentences, seed)), context + 1);
}

/** The mean next-character cross-entropy of `model` over windows (B, T + 1) int64. */
export function lmLoss(model: nn.Module, batch: Tensor): Tensor {
  const t = batch.shape[1] - 1;
  const logits = model.forward(batch.narrow(1, 0, t)) as Tensor;
  return crossEntropy(logits.reshape([-1, logits.shape[2]]), batch.narrow(1, 1, t).reshape([-1]));
}

/** The loss over a whole evaluation set, without autograd. */
export function evaluate(model: nn.Module, data: Examples): number {
  return noGrad(() => tidy(() => lmLoss(model, data.inputs).item()));
}

/** Trains the parameters `params` of `model` for `steps` AdamW steps on `data`. */
export function train(model: nn.Module, params: Tensor[], data: Examples, options: { steps: number; batchSize: number; lr: number }): void {
  const opt = new optim.AdamW(params, { lr: options.lr, weightDecay: 0 });
  for (let step = 0; step < options.steps; step++) {
    // tidy frees the step's activations and loss at once; backward keeps what it needs itself.
    tidy(() => {
      const { inputs } = batchAt(data, (step * 7919) % data.count, options.batchSize);
      lmLoss(model, inputs).backward();
      opt.step();
      opt.zeroGrad();
    });
  }
}

/**
 * Samples `length` characters after `prompt`: the next-character logits divided by the
 * temperature, cut to the `topK` largest, softmax, one draw (seeded by `seed`). The model reads
 * at most the last `context` characters.
 */
export function sample(
  model: nn.Module,
  prompt: string,
  length: number,
  options: { temperature: number; topK: number; seed: number; context?: number },
): string {
  manualSeed(options.seed);
  const ids = encode(prompt);
  const context = options.context ?? CONFIG.context;
  noGrad(() => {
    for (let i = 0; i < length; i++) {
      ids.push(
        tidy(() => {
          const window = ids.slice(-context);
          const logits = model.forward(tensor(window, { dtype: "int64", shape: [1, window.length] })) as Tensor;
          const last = logits
            .reshape([-1, logits.shape[2]])
            .narrow(0, window.length - 1, 1)
            .squeeze(0)
            .div(options.temperature);
          const { values, indices } = last.topk(options.topK);
          const choice = values.softmax(-1).multinomial(1); // an index into the top-k
          return Number(indices.gather(0, choice).item());
        }),
      );
    }
  });
  return ids.map((id) => ALPHABET[id]).join("");
}

/** Sizes of a full run and of the short one the tests use (`--quick`). */
export function schedule(quick: boolean) {
  return quick
    ? { pretrainSteps: 60, finetuneSteps: 40, batchSize: 16, sentences: 300, sampleLength: 40 }
    : { pretrainSteps: 500, finetuneSteps: 400, batchSize: 32, sentences: 1200, sampleLength: 80 };
}

/** The LoRA settings: q and v projections of every block, and the token embedding. */
export const LORA = { r: 16, loraAlpha: 32, targetModules: ["q_proj", "v_proj", "tok"] };

/** Builds and pretrains the base model on task A (seeded: the same model every time). */
export function pretrain(quick: boolean): TinyGPT {
  const s = schedule(quick);
  manualSeed(0);
  const model = new TinyGPT(CONFIG);
  train(model, model.parameters(), windows("A", s.sentences, 1), { steps: s.pretrainSteps, batchSize: s.batchSize, lr: 3e-3 });
  return model;
}

/** Injects LoRA into `model` and fine-tunes the adapter on task B; returns the LoRA-wrapped model. */
export function finetune(model: TinyGPT, quick: boolean): lora.LoraModel<TinyGPT> {
  const s = schedule(quick);
  manualSeed(1);
  const lm = lora.injectAdapter(model, LORA);
  train(lm, lm.trainableParameters(), windows("B", s.sentences, 2), { steps: s.finetuneSteps, batchSize: s.batchSize, lr: 1e-2 });
  return lm;
}

function main(): void {
  const quick = process.argv.includes("--quick");
  const s = schedule(quick);
  const evalB = windows("B", 60, 3);
  const sampling = { temperature: 0.6, topK: 4, seed: 7 };

  const model = pretrain(quick);
  console.log(`pretrained on task A: ${model.parameters().length} parameter tensors (head tied to tok: ${model.head.weight === model.tok.weight})`);
  const before = evaluate(model, evalB);
  console.log(`task B loss before LoRA: ${before.toFixed(4)}`);
  console.log(`sample before: ${JSON.stringify(sample(model, "the ", s.sampleLength, sampling))}`);

  const lm = finetune(model, quick);
  console.log(lm.formatTrainableParameters());
  const after = evaluate(lm, evalB);
  console.log(`task B loss after LoRA: ${after.toFixed(4)}`);
  console.log(`sample after: ${JSON.stringify(sample(lm, "the ", s.sampleLength, sampling))}`);
}

if (require.main === module) main();
