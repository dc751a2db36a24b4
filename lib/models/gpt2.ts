/**
 * GPT-2 as transformers' `GPT2LMHeadModel`: the same module tree and state-dict keys
 * (`transformer.wte`, `transformer.h.0.attn.c_attn`, ..., `lm_head` tied to `transformer.wte`),
 * Conv1D layers storing their weights `(in, out)`, the tanh GELU ("gelu_new") and attention
 * scaled by 1/√head_dim.
 */
import { scaledDotProductAttention } from "../attention";
import { Dtype, Device } from "../dtype";
import { Conv1D, Dropout, Embedding, LayerNorm, Linear, Module, ModuleList, gelu } from "../nn";
import { Tensor } from "../tensor";
import { CausalLM } from "./causal-lm";
import { outputHead } from "./head";
import { initCausalLMWeights } from "./init-weights";
import { GPT2Config } from "./config";
import { CausalLMForwardOptions, ForwardContext, forwardContext } from "./context";

/** Where the parameters are created. */
export interface ModelFactoryOptions {
  dtype?: Dtype;
  device?: Device;
}

/** GPT-2's activations by config name; "gelu_new" is `0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³)))`. */
function activate(name: string, x: Tensor): Tensor {
  switch (name) {
    case "gelu_new":
    case "gelu_pytorch_tanh":
    case "gelu_fast":
      return gelu(x, "tanh"); // one fused op: the formula above within fp32 round-off
    case "gelu":
      return x.gelu();
    case "relu":
      return x.relu();
    default:
      return x.silu();
  }
}

/** Causal self-attention with one fused q/k/v projection (`c_attn`) and the output projection (`c_proj`). */
export class GPT2Attention extends Module {
  c_attn: Conv1D;
  c_proj: Conv1D;
  resid_dropout: Dropout;
  readonly #heads: number;
  readonly #layer: number;
  readonly #attnDropout: number;

  constructor(config: GPT2Config, layer: number, options: ModelFactoryOptions) {
    super();
    const E = config.n_embd;
    this.c_attn = new Conv1D(3 * E, E, options);
    this.c_proj = new Conv1D(E, E, options);
    this.resid_dropout = new Dropout(config.resid_pdrop);
    this.#heads = config.n_head;
    this.#layer = layer;
    this.#attnDropout = config.attn_pdrop;
  }

  override forward(x: Tensor, ctx: ForwardContext): Tensor {
    const [B, T, E] = x.shape;
    const H = this.#heads;
    const heads = (t: Tensor) => t.view([B, T, H, E / H]).transpose(1, 2);
    const [q, k, v] = this.c_attn.forward(x).split(E, 2).map(heads);
    const attention = { mask: ctx.mask, causal: ctx.causal, dropoutP: this.training ? this.#attnDropout : 0 };
    const y = ctx.cache ? ctx.cache.attend(this.#layer, q, k, v, attention) : scaledDotProductAttention(q, k, v, attention);
    return this.resid_dropout.forward(this.c_proj.forward(y.transpose(1, 2).reshape([B, T, E])));
  }
}

/** The feed-forward block: `c_fc`, the activation, `c_proj`. */
export class GPT2MLP extends Module {
  c_fc: Conv1D;
  c_proj: Conv1D;
  dropout: Dropout;
  readonly #act: string;

  constructor(config: GPT2Config, options: ModelFactoryOptions) {
    super();
    this.c_fc = new Conv1D(config.n_inner, config.n_embd, options);
    this.c_proj = new Conv1D(config.n_embd, config.n_inner, options);
    this.dropout = new Dropout(config.resid_pdrop);
    this.#act = config.activation_function;
  }

  override forward(x: Tensor): Tensor {
    return this.dropout.forward(this.c_proj.forward(activate(this.#act, this.c_fc.forward(x))));
  }
}

/** A pre-norm transformer block: `x + attn(ln_1(x))`, then `x + mlp(ln_2(x))`. */
export class GPT2Block extends Module {
  ln_1: LayerNorm;
  attn: GPT2Attention;
  ln_2: LayerNorm;
  mlp: GPT2MLP;

  constructor(config: GPT2Config, layer: number, options: ModelFactoryOptions) {
    super();
    this.ln_1 = new LayerNorm(config.n_embd, { eps: config.layer_norm_epsilon, ...options });
    this.attn = new GPT2Attention(config, layer, options);
    this.ln_2 = new LayerNorm(config.n_embd, { eps: config.layer_norm_epsilon, ...options });
    this.mlp = new GPT2MLP(config, options);
  }

  override forward(x: Tensor, ctx: ForwardContext): Tensor {
    const h = x.add(this.attn.forward(this.ln_1.forward(x), ctx));
    return h.add(this.mlp.forward(this.ln_2.forward(h)));
  }
}

/** transformers' `GPT2Model`: embeddings, blocks and the final LayerNorm. */
export class GPT2Model extends Module {
  wte: Embedding;
  wpe: Embedding;
  drop: Dropout;
  h: ModuleList<GPT2Block>;
  ln_f: LayerNorm;

  constructor(config: GPT2Config, options: ModelFactoryOptions) {
    super();
    this.wte = new Embedding(config.vocab_size, config.n_embd, options);
    this.wpe = new Embedding(config.n_positions, config.n_embd, options);
    this.drop = new Dropout(config.embd_pdrop);
    this.h = new ModuleList(Array.from({ length: config.n_layer }, (_, i) => new GPT2Block(config, i, options)));
    this.ln_f = new LayerNorm(config.n_embd, { eps: config.layer_norm_epsilon, ...options });
  }

  override forward(ids: Tensor, ctx: ForwardContext): Tensor {
    let x = this.drop.forward(this.wte.forward(ids).add(this.wpe.forward(ctx.positions)));
    for (const block of this.h) x = block.forward(x, ctx);
    return this.ln_f.forward(x);
  }
}

/**
 * transformers' `GPT2LMHeadModel`. `forward(ids, { attentionMask })` gives the logits `(B, T, V)`.
 *
 * @example
 * const model = new models.GPT2LMHeadModel({ n_embd: 64, n_layer: 2, n_head: 4, vocab_size: 100 });
 * const logits = model.forward(ids);
 */
export class GPT2LMHeadModel extends CausalLM {
  readonly config: GPT2Config;
  transformer: GPT2Model;
  lm_head: Linear;

  /**
   * Builds a model from a config (a {@link GPT2Config} or its config.json object), initialized as
   * transformers does: weights N(0, initializer_range²), the residual projections `c_proj` with
   * std initializer_range / √(2·n_layer), biases zero, LayerNorm weights one.
   */
  constructor(config: GPT2Config | Record<string, unknown>, options: ModelFactoryOptions = {}) {
    super();
    this.config = config instanceof GPT2Config ? config : new GPT2Config(config);
    this.transformer = new GPT2Model(this.config, options);
    this.lm_head = outputHead(this.config.n_embd, this.config.vocab_size, this.config.tie_word_embeddings ? this.transformer.wte.weight : null, options);
    initCausalLMWeights(this, this.config);
  }

  protected override hiddenStates(ids: Tensor, options: CausalLMForwardOptions, caller: string): Tensor {
    const ctx = forwardContext(ids, options, null, "", caller);
    const past = ctx.cache?.length ?? 0;
    const last = past + ids.shape[1];
    if (last > this.config.n_positions) {
      throw new RangeError(`${caller}: position ${last - 1} is beyond n_positions (${this.config.n_positions})`);
    }
    const hidden = this.transformer.forward(ids, ctx);
    if (ctx.cache) ctx.cache.length = last;
    return hidden;
  }
}
