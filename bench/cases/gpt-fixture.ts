/**
 * A small GPT written with the library's plain ops, the way a user would write one today:
 * pre-norm blocks, layer norm from mean/sub/mul, heads by reshape/transpose, a causal mask
 * added from a precomputed tensor, GELU MLP, LoRA on the attention projections. Its PyTorch
 * twin is bench/python/gpt_reference.py (same ops in the same order).
 *
 * Left alone, `forward` disposes nothing: whether intermediates are freed by scopes or left to
 * the garbage collector is what the benchmark compares. With `scopePerBlock`, each block runs
 * in its own tidy(), as docs/memory.md recommends for inference: a block's intermediates are
 * freed as soon as it returns, so the next block reuses their (cache-warm, already mapped)
 * memory instead of the whole forward's activations piling up until the step's scope ends.
 */
import { crossEntropy } from "../../lib/functional";
import { injectAdapter, LoraModel } from "../../lib/lora/model";
import { Embedding, Linear } from "../../lib/nn/layers";
import { Module, ModuleList } from "../../lib/nn/module";
import { tidy } from "../../lib/scope";
import { Tensor, manualSeed, ones, tensor, zeros } from "../../lib/tensor";

/** The larger of the two configs: 4 layers, d 256, T 128, batch 8. */
export const GPT = { layers: 4, dim: 256, heads: 4, context: 128, batch: 8, vocab: 512, r: 8 } as const;

/** Layer norm over the last dimension: (x - mean) / sqrt(var + eps) · g + b. */
class LayerNorm extends Module {
  weight: Tensor;
  bias: Tensor;
  constructor(dim: number) {
    super();
    this.weight = ones([dim], { requiresGrad: true });
    this.bias = zeros([dim], { requiresGrad: true });
  }
  override forward(x: Tensor): Tensor {
    const centered = x.sub(x.mean(-1, true));
    const variance = centered.mul(centered).mean(-1, true);
    return centered.div(variance.add(1e-5).sqrt()).mul(this.weight).add(this.bias);
  }
}

class Block extends Module {
  ln1 = new LayerNorm(GPT.dim);
  c_attn = new Linear(GPT.dim, 3 * GPT.dim);
  c_proj = new Linear(GPT.dim, GPT.dim);
  ln2 = new LayerNorm(GPT.dim);
  fc = new Linear(GPT.dim, 4 * GPT.dim);
  proj = new Linear(4 * GPT.dim, GPT.dim);

  override forward(x: Tensor, mask: Tensor): Tensor {
    const [B, T, D] = [GPT.batch, GPT.context, GPT.dim];
    const H = GPT.heads;
    const hd = D / H;
    const qkv = this.c_attn.forward(this.ln1.forward(x));
    const heads = (i: number) =>
      qkv
        .narrow(2, i * D, D)
        .reshape([B, T, H, hd])
        .transpose(1, 2);
    const [q, k, v] = [heads(0), heads(1), heads(2)];
    const att = q
      .matmul(k.transpose(2, 3))
      .mul(1 / Math.sqrt(hd))
      .add(mask)
      .softmax(-1);
    const y = att.matmul(v).transpose(1, 2).reshape([B, T, D]);
    const h = x.add(this.c_proj.forward(y));
    return h.add(this.proj.forward(this.fc.forward(this.ln2.forward(h)).gelu()));
  }
}

/** Token + position embeddings, `layers` blocks, final norm, LM head. */
export class SmallGpt extends Module {
  wte = new Embedding(GPT.vocab, GPT.dim);
  wpe = new Embedding(GPT.context, GPT.dim);
  h = new ModuleList<Block>(Array.from({ length: GPT.layers }, () => new Block()));
  ln_f = new LayerNorm(GPT.dim);
  lm_head = new Linear(GPT.dim, GPT.vocab, { bias: false });
  /** Run each block in its own tidy() (see the file's header). */
  scopePerBlock = false;
  // Private fields: constants, not parameters (Module takes every Tensor field for one).
  readonly #positions = tensor(
    Array.from({ length: GPT.context }, (_, i) => i),
    { dtype: "int64" },
  );
  /** Additive causal mask: 0 on and below the diagonal, -inf above. */
  readonly #mask = causalMask(GPT.context);

  override forward(ids: Tensor): Tensor {
    let x = this.wte.forward(ids).add(this.wpe.forward(this.#positions));
    for (const block of this.h) {
      const input = x;
      x = this.scopePerBlock ? tidy(() => block.forward(input, this.#mask)) : block.forward(input, this.#mask);
    }
    return this.lm_head.forward(this.ln_f.forward(x));
  }
}

function causalMask(T: number): Tensor {
  const values = new Float32Array(T * T);
  for (let i = 0; i < T; i++) for (let j = i + 1; j < T; j++) values[i * T + j] = -Infinity;
  return tensor(values, { shape: [T, T] });
}

/** The model with LoRA (r 8, alpha 16) on every block's c_attn and c_proj, its fixed batch, and the loss. */
export function gptSetup(options: { scopePerBlock?: boolean } = {}): { model: LoraModel; ids: Tensor; targets: Tensor; loss: () => Tensor } {
  manualSeed(0);
  const gpt = new SmallGpt();
  gpt.scopePerBlock = options.scopePerBlock ?? false;
  const model = injectAdapter(gpt, { r: GPT.r, loraAlpha: 2 * GPT.r, targetModules: ["c_attn", "c_proj"] });
  const n = GPT.batch * GPT.context;
  const ids = tensor(gptTokens(n, 0), { dtype: "int64", shape: [GPT.batch, GPT.context] });
  const targets = tensor(gptTokens(n, 1), { dtype: "int64" });
  const loss = () => crossEntropy((model.forward(ids) as Tensor).reshape([n, GPT.vocab]), targets);
  return { model, ids, targets, loss };
}

/** Fixed pseudo-random token ids (the Python side computes the same ones). */
export function gptTokens(n: number, shift: number): number[] {
  return Array.from({ length: n }, (_, i) => ((i + shift) * 31 + 7) % GPT.vocab);
}
