/**
 * The Llama family as transformers' `LlamaForCausalLM` (also Mistral and Qwen2 checkpoints, which
 * differ only in config fields): the same module tree and state-dict keys (`model.embed_tokens`,
 * `model.layers.0.self_attn.q_proj`, `model.norm`, `lm_head`), RMSNorm, a SiLU-gated MLP,
 * rotary position embeddings in the rotate_half layout, and grouped-query attention.
 */
import { scaledDotProductAttention } from "../attention";
import { Embedding, Linear, Module, ModuleList, RMSNorm, SiLU } from "../nn";
import { Tensor, arange, cat, full, tensor } from "../tensor";
import { CausalLM } from "./causal-lm";
import { outputHead } from "./head";
import { initCausalLMWeights } from "./init-weights";
import { LlamaConfig } from "./config";
import { scaleInverseFrequencies } from "./rope";
import { CausalLMForwardOptions, ForwardContext, forwardContext } from "./context";
import type { ModelFactoryOptions } from "./gpt2";

/** A forward's context plus the rotary tables of its positions, `(B, T, D)`. */
interface RotaryContext extends ForwardContext {
  cos: Tensor;
  sin: Tensor;
}

/** `cat(-x2, x1)` over the halves of the last dim, transformers' `rotate_half`. */
function rotateHalf(x: Tensor): Tensor {
  const half = x.shape[x.ndim - 1] / 2;
  return cat([x.narrow(-1, half, half).neg(), x.narrow(-1, 0, half)], -1);
}

/** `x cos + rotate_half(x) sin`, with the tables broadcast over the heads of `x (B, H, T, D)`. */
function applyRotary(x: Tensor, cos: Tensor, sin: Tensor): Tensor {
  return x.mul(cos).add(rotateHalf(x).mul(sin));
}

/**
 * transformers' `LlamaRotaryEmbedding`: inverse frequencies `1 / θ^(2i/D)` (a non-persistent
 * buffer), scaled as the config's RoPE scaling says ("linear", "llama3"), tables computed in float32.
 */
export class LlamaRotaryEmbedding extends Module {
  declare inv_freq: Tensor;

  constructor(config: LlamaConfig, options: ModelFactoryOptions) {
    super();
    const D = config.head_dim;
    const device = options.device ?? "cpu";
    const exponents = arange(0, D, 2, { dtype: "int64" }).to("float32").div(D);
    const invFreq = full([D / 2], 1).div(full([D / 2], config.rope_theta).pow(exponents));
    const scaled = scaleInverseFrequencies(invFreq.toList() as number[], config.rope_scaling);
    this.registerBuffer("inv_freq", tensor(scaled, { dtype: "float32", device }), { persistent: false });
  }

  /** The cos and sin tables `(B, 1, T, D)` of `positions (B, T)`, in `dtype`. */
  override forward(positions: Tensor, dtype: Tensor["dtype"]): { cos: Tensor; sin: Tensor } {
    const freqs = positions
      .to("float32")
      .unsqueeze(-1)
      .mul(this.inv_freq.to({ device: positions.device }));
    const emb = cat([freqs, freqs], -1).unsqueeze(1);
    return { cos: emb.cos().to(dtype), sin: emb.sin().to(dtype) };
  }
}

/** Multi-head attention with grouped key/value heads and rotary embeddings on q and k. */
export class LlamaAttention extends Module {
  q_proj: Linear;
  k_proj: Linear;
  v_proj: Linear;
  o_proj: Linear;
  readonly #config: LlamaConfig;
  readonly #layer: number;

  constructor(config: LlamaConfig, layer: number, options: ModelFactoryOptions) {
    super();
    const { hidden_size: E, num_attention_heads: H, num_key_value_heads: Hkv, head_dim: D } = config;
    this.q_proj = new Linear(E, H * D, { bias: config.qkv_bias, ...options });
    this.k_proj = new Linear(E, Hkv * D, { bias: config.qkv_bias, ...options });
    this.v_proj = new Linear(E, Hkv * D, { bias: config.qkv_bias, ...options });
    this.o_proj = new Linear(H * D, E, { bias: config.o_proj_bias, ...options });
    this.#config = config;
    this.#layer = layer;
  }

  override forward(x: Tensor, ctx: RotaryContext): Tensor {
    const [B, T] = x.shape;
    const { num_attention_heads: H, num_key_value_heads: Hkv, head_dim: D } = this.#config;
    const q = applyRotary(this.q_proj.forward(x).view([B, T, H, D]).transpose(1, 2), ctx.cos, ctx.sin);
    const k = applyRotary(this.k_proj.forward(x).view([B, T, Hkv, D]).transpose(1, 2), ctx.cos, ctx.sin);
    const v = this.v_proj.forward(x).view([B, T, Hkv, D]).transpose(1, 2);
    const attention = { mask: ctx.mask, causal: ctx.causal, dropoutP: this.training ? this.#config.attention_dropout : 0 };
    const y = ctx.cache ? ctx.cache.attend(this.#layer, q, k, v, attention) : scaledDotProductAttention(q, k, v, attention);
    return this.o_proj.forward(y.transpose(1, 2).reshape([B, T, H * D]));
  }
}

/** `down_proj(silu(gate_proj(x)) · up_proj(x))`. */
export class LlamaMLP extends Module {
  gate_proj: Linear;
  up_proj: Linear;
  down_proj: Linear;
  act_fn: SiLU;

  constructor(config: LlamaConfig, options: ModelFactoryOptions) {
    super();
    const bias = config.mlp_bias;
    this.gate_proj = new Linear(config.hidden_size, config.intermediate_size, { bias, ...options });
    this.up_proj = new Linear(config.hidden_size, config.intermediate_size, { bias, ...options });
    this.down_proj = new Linear(config.intermediate_size, config.hidden_size, { bias, ...options });
    this.act_fn = new SiLU();
  }

  override forward(x: Tensor): Tensor {
    return this.down_proj.forward(this.act_fn.forward(this.gate_proj.forward(x)).mul(this.up_proj.forward(x)));
  }
}

/** A pre-norm decoder layer with RMSNorm. */
export class LlamaDecoderLayer extends Module {
  self_attn: LlamaAttention;
  mlp: LlamaMLP;
  input_layernorm: RMSNorm;
  post_attention_layernorm: RMSNorm;

  constructor(config: LlamaConfig, layer: number, options: ModelFactoryOptions) {
    super();
    this.self_attn = new LlamaAttention(config, layer, options);
    this.mlp = new LlamaMLP(config, options);
    this.input_layernorm = new RMSNorm(config.hidden_size, { eps: config.rms_norm_eps, ...options });
    this.post_attention_layernorm = new RMSNorm(config.hidden_size, { eps: config.rms_norm_eps, ...options });
  }

  override forward(x: Tensor, ctx: RotaryContext): Tensor {
    const h = x.add(this.self_attn.forward(this.input_layernorm.forward(x), ctx));
    return h.add(this.mlp.forward(this.post_attention_layernorm.forward(h)));
  }
}

/** transformers' `LlamaModel`: token embeddings, decoder layers, final norm, rotary tables. */
export class LlamaModel extends Module {
  embed_tokens: Embedding;
  layers: ModuleList<LlamaDecoderLayer>;
  norm: RMSNorm;
  rotary_emb: LlamaRotaryEmbedding;

  constructor(config: LlamaConfig, options: ModelFactoryOptions) {
    super();
    this.embed_tokens = new Embedding(config.vocab_size, config.hidden_size, {
      paddingIdx: typeof config.pad_token_id === "number" && config.pad_token_id < config.vocab_size ? config.pad_token_id : null,
      ...options,
    });
    this.layers = new ModuleList(Array.from({ length: config.num_hidden_layers }, (_, i) => new LlamaDecoderLayer(config, i, options)));
    this.norm = new RMSNorm(config.hidden_size, { eps: config.rms_norm_eps, ...options });
    this.rotary_emb = new LlamaRotaryEmbedding(config, options);
  }

  override forward(ids: Tensor, ctx: ForwardContext): Tensor {
    let x = this.embed_tokens.forward(ids);
    const rotary: RotaryContext = { ...ctx, ...this.rotary_emb.forward(ctx.positions, x.dtype) };
    for (const layer of this.layers) x = layer.forward(x, rotary);
    return this.norm.forward(x);
  }
}

/**
 * transformers' `LlamaForCausalLM`, also for `model_type` mistral and qwen2.
 * `forward(ids, { attentionMask })` gives the logits `(B, T, V)`.
 */
export class LlamaForCausalLM extends CausalLM {
  readonly config: LlamaConfig;
  model: LlamaModel;
  lm_head: Linear;

  /**
   * Builds a model from a config (a {@link LlamaConfig} or its config.json object), initialized
   * as transformers does: weights N(0, initializer_range²), biases zero, RMSNorm weights one.
   */
  constructor(config: LlamaConfig | Record<string, unknown>, options: ModelFactoryOptions = {}) {
    super();
    this.config = config instanceof LlamaConfig ? config : new LlamaConfig(config);
    this.model = new LlamaModel(this.config, options);
    this.lm_head = outputHead(
      this.config.hidden_size,
      this.config.vocab_size,
      this.config.tie_word_embeddings ? this.model.embed_tokens.weight : null,
      options,
    );
    initCausalLMWeights(this, this.config);
  }

  protected override hiddenStates(ids: Tensor, options: CausalLMForwardOptions, caller: string): Tensor {
    const ctx = forwardContext(ids, options, this.config.sliding_window, `${this.config.model_type}'s sliding_window`, caller);
    const hidden = this.model.forward(ids, ctx);
    if (ctx.cache) ctx.cache.length += ids.shape[1];
    return hidden;
  }
}
