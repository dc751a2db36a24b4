/**
 * transformers' `config.json` for the architectures torch-lora implements: GPT-2 (`GPT2Config`)
 * and the Llama family (`LlamaConfig`, also Mistral and Qwen2, which differ from Llama only in
 * fields). Defaults are transformers'; a field this library does not implement is refused by
 * name rather than silently ignored, and fields that change nothing here are kept as given.
 */
import { ConfigError, describe } from "../errors";
import { RopeScaling, ropeSettings } from "./rope";

type Json = Record<string, unknown>;

function field<T>(json: Json, name: string, fallback: T, check: (v: unknown) => boolean, expected: string, where: string): T {
  const v = json[name];
  if (v === undefined || v === null) return fallback;
  if (!check(v)) throw new ConfigError(`${where}.${name}: expected ${expected}, got ${describe(v)}`);
  return v as T;
}

const positiveInt = (v: unknown) => Number.isInteger(v) && (v as number) >= 1;
const nonNegative = (v: unknown) => typeof v === "number" && Number.isFinite(v) && v >= 0;
const probability = (v: unknown) => typeof v === "number" && v >= 0 && v < 1;
const isBool = (v: unknown) => typeof v === "boolean";
const tokenId = (v: unknown) => v === null || Number.isInteger(v) || (Array.isArray(v) && v.every((x) => Number.isInteger(x)));

function checkObject(json: unknown, where: string): Json {
  if (json === null || typeof json !== "object" || Array.isArray(json)) throw new ConfigError(`${where}: expected a config.json object, got ${describe(json)}`);
  return json as Json;
}

/** The ids a config may name for special tokens: one id, several (Llama 3's eos), or none. */
export type TokenIds = number | number[] | null;

/** GPT-2's config.json, with transformers' defaults. */
export class GPT2Config {
  readonly model_type = "gpt2";
  readonly vocab_size: number;
  readonly n_positions: number;
  readonly n_embd: number;
  readonly n_layer: number;
  readonly n_head: number;
  /** The MLP's hidden size; null in the file means 4 × n_embd. */
  readonly n_inner: number;
  readonly activation_function: string;
  readonly layer_norm_epsilon: number;
  readonly resid_pdrop: number;
  readonly embd_pdrop: number;
  readonly attn_pdrop: number;
  readonly tie_word_embeddings: boolean;
  readonly bos_token_id: TokenIds;
  readonly eos_token_id: TokenIds;
  readonly pad_token_id: TokenIds;
  /** The std of the normal init of a model built from this config (transformers' `_init_weights`). */
  readonly initializer_range: number;
  /** Where the checkpoint came from (`_name_or_path`), written into adapters' `base_model_name_or_path`. */
  readonly name_or_path: string | null;
  /** Every field of the file, for writing it back unchanged. */
  readonly raw: Json;

  /** Parses a GPT-2 config.json object. @throws ConfigError naming the first bad or unsupported field. */
  constructor(json: unknown, where = "GPT2Config") {
    const j = checkObject(json, where);
    const f = <T>(name: string, fallback: T, check: (v: unknown) => boolean, expected: string) => field(j, name, fallback, check, expected, where);
    this.raw = { ...j, model_type: "gpt2" };
    this.vocab_size = f("vocab_size", 50257, positiveInt, "a positive integer");
    this.n_positions = f("n_positions", 1024, positiveInt, "a positive integer");
    this.n_embd = f("n_embd", 768, positiveInt, "a positive integer");
    this.n_layer = f("n_layer", 12, positiveInt, "a positive integer");
    this.n_head = f("n_head", 12, positiveInt, "a positive integer");
    if (this.n_embd % this.n_head !== 0) throw new ConfigError(`${where}.n_embd: ${this.n_embd} must be a multiple of n_head (${this.n_head})`);
    this.n_inner = f("n_inner", 4 * this.n_embd, positiveInt, "a positive integer or null");
    this.activation_function = f(
      "activation_function",
      "gelu_new",
      (v) => typeof v === "string" && v in ACTIVATIONS,
      `one of ${Object.keys(ACTIVATIONS).join(", ")}`,
    );
    this.layer_norm_epsilon = f("layer_norm_epsilon", 1e-5, nonNegative, "a number >= 0");
    this.resid_pdrop = f("resid_pdrop", 0.1, probability, "a probability in [0, 1)");
    this.embd_pdrop = f("embd_pdrop", 0.1, probability, "a probability in [0, 1)");
    this.attn_pdrop = f("attn_pdrop", 0.1, probability, "a probability in [0, 1)");
    this.tie_word_embeddings = f("tie_word_embeddings", true, isBool, "a boolean");
    this.bos_token_id = f("bos_token_id", 50256, tokenId, "a token id");
    this.eos_token_id = f("eos_token_id", 50256, tokenId, "a token id");
    this.pad_token_id = f("pad_token_id", null, tokenId, "a token id");
    this.initializer_range = f("initializer_range", 0.02, nonNegative, "a number >= 0");
    this.name_or_path = typeof j._name_or_path === "string" && j._name_or_path ? j._name_or_path : null;
    refuse(j, where, {
      add_cross_attention: (v) => v === true && "cross-attention (encoder-decoder GPT-2) is not implemented",
      scale_attn_by_inverse_layer_idx: (v) => v === true && "scaling attention by the inverse layer index is not implemented",
      reorder_and_upcast_attn: (v) => v === true && "reordered, upcast attention is not implemented",
      scale_attn_weights: (v) => v === false && "unscaled attention is not implemented",
    });
  }

  /** The config as config.json holds it: every field of the file unchanged, with the defaults of the fields it omits. */
  toJSON(): Json {
    const { raw: _raw, name_or_path: _n, ...fields } = this;
    return { ...fields, ...this.raw }; // the file's own values as written; defaults for what it left out
  }
}

/** GPT-2's activation names and what each computes ("gelu_new" is the tanh approximation). */
export const ACTIVATIONS: Record<string, true> = { gelu_new: true, gelu_pytorch_tanh: true, gelu_fast: true, gelu: true, relu: true, silu: true, swish: true };

/** The model types {@link LlamaConfig} covers, with the defaults where they differ from Llama's. */
const LLAMA_FAMILY: Record<string, { rms_norm_eps: number; sliding_window: number | null; qkv_bias: boolean }> = {
  llama: { rms_norm_eps: 1e-6, sliding_window: null, qkv_bias: false },
  mistral: { rms_norm_eps: 1e-6, sliding_window: 4096, qkv_bias: false },
  qwen2: { rms_norm_eps: 1e-6, sliding_window: 4096, qkv_bias: true },
};

/** The `model_type`s that {@link LlamaConfig} accepts. */
export const LLAMA_MODEL_TYPES: readonly string[] = Object.keys(LLAMA_FAMILY);

/** Llama's config.json (also Mistral's and Qwen2's), with transformers' defaults. */
export class LlamaConfig {
  readonly model_type: string;
  readonly vocab_size: number;
  readonly hidden_size: number;
  readonly intermediate_size: number;
  readonly num_hidden_layers: number;
  readonly num_attention_heads: number;
  /** Key/value heads (grouped-query attention); defaults to num_attention_heads. */
  readonly num_key_value_heads: number;
  /** Per-head size; defaults to hidden_size / num_attention_heads. */
  readonly head_dim: number;
  readonly hidden_act: string;
  readonly max_position_embeddings: number;
  readonly rms_norm_eps: number;
  readonly rope_theta: number;
  /** How RoPE's frequencies are scaled (`rope_scaling`, or transformers 5's `rope_parameters`). */
  readonly rope_scaling: RopeScaling;
  readonly tie_word_embeddings: boolean;
  /** Biases on q/k/v/o (Llama's attention_bias); Qwen2 has them on q/k/v only. */
  readonly attention_bias: boolean;
  /** Bias on o_proj: attention_bias for Llama, never for Qwen2. */
  readonly o_proj_bias: boolean;
  /** Bias on q/k/v_proj. */
  readonly qkv_bias: boolean;
  readonly mlp_bias: boolean;
  readonly attention_dropout: number;
  /** The window of Mistral/Qwen2's sliding-window attention, or null: sequences longer than it are refused. */
  readonly sliding_window: number | null;
  readonly bos_token_id: TokenIds;
  readonly eos_token_id: TokenIds;
  readonly pad_token_id: TokenIds;
  /** The std of the normal init of a model built from this config (transformers' `_init_weights`). */
  readonly initializer_range: number;
  readonly name_or_path: string | null;
  readonly raw: Json;

  /** Parses a Llama/Mistral/Qwen2 config.json object. @throws ConfigError naming the first bad or unsupported field. */
  constructor(json: unknown, where = "LlamaConfig") {
    const j = checkObject(json, where);
    const type = j.model_type ?? "llama";
    if (typeof type !== "string" || !Object.hasOwn(LLAMA_FAMILY, type)) {
      throw new ConfigError(`${where}.model_type: expected one of ${LLAMA_MODEL_TYPES.join(", ")}, got ${describe(type)}`);
    }
    const family = LLAMA_FAMILY[type];
    const f = <T>(name: string, fallback: T, check: (v: unknown) => boolean, expected: string) => field(j, name, fallback, check, expected, where);
    this.model_type = type;
    this.raw = { ...j, model_type: type };
    this.vocab_size = f("vocab_size", 32000, positiveInt, "a positive integer");
    this.hidden_size = f("hidden_size", 4096, positiveInt, "a positive integer");
    this.intermediate_size = f("intermediate_size", 11008, positiveInt, "a positive integer");
    this.num_hidden_layers = f("num_hidden_layers", 32, positiveInt, "a positive integer");
    this.num_attention_heads = f("num_attention_heads", 32, positiveInt, "a positive integer");
    this.num_key_value_heads = f("num_key_value_heads", this.num_attention_heads, positiveInt, "a positive integer");
    if (this.num_attention_heads % this.num_key_value_heads !== 0) {
      throw new ConfigError(`${where}.num_key_value_heads: ${this.num_key_value_heads} must divide num_attention_heads (${this.num_attention_heads})`);
    }
    const defaultHeadDim = this.hidden_size / this.num_attention_heads;
    this.head_dim = f("head_dim", defaultHeadDim, positiveInt, "a positive integer");
    if (!Number.isInteger(this.head_dim))
      throw new ConfigError(
        `${where}.hidden_size: ${this.hidden_size} must be a multiple of num_attention_heads (${this.num_attention_heads}) when head_dim is not given`,
      );
    if (this.head_dim % 2 !== 0) throw new ConfigError(`${where}.head_dim: rotary embeddings need an even head size, got ${this.head_dim}`);
    this.hidden_act = f("hidden_act", "silu", (v) => v === "silu" || v === "swish", '"silu" (the only activation implemented for this family)');
    this.max_position_embeddings = f("max_position_embeddings", 2048, positiveInt, "a positive integer");
    this.rms_norm_eps = f("rms_norm_eps", family.rms_norm_eps, nonNegative, "a number >= 0");
    const rope = ropeSettings(
      j,
      f("rope_theta", 10000, (v) => typeof v === "number" && v > 0, "a number > 0"),
      where,
    );
    this.rope_theta = rope.theta;
    this.rope_scaling = rope.scaling;
    this.tie_word_embeddings = f("tie_word_embeddings", false, isBool, "a boolean");
    this.attention_bias = f("attention_bias", false, isBool, "a boolean");
    this.qkv_bias = family.qkv_bias || this.attention_bias;
    this.o_proj_bias = type === "qwen2" ? false : this.attention_bias;
    this.mlp_bias = f("mlp_bias", false, isBool, "a boolean");
    this.attention_dropout = f("attention_dropout", 0, probability, "a probability in [0, 1)");
    const window = f<number | null>("sliding_window", family.sliding_window, positiveInt, "a positive integer or null");
    const useWindow = type === "qwen2" ? f("use_sliding_window", false, isBool, "a boolean") : type === "mistral";
    this.sliding_window = useWindow ? window : null;
    this.bos_token_id = f("bos_token_id", 1, tokenId, "a token id");
    this.eos_token_id = f("eos_token_id", 2, tokenId, "a token id");
    this.pad_token_id = f("pad_token_id", null, tokenId, "a token id");
    this.initializer_range = f("initializer_range", 0.02, nonNegative, "a number >= 0");
    this.name_or_path = typeof j._name_or_path === "string" && j._name_or_path ? j._name_or_path : null;
    refuse(j, where, {
      pretraining_tp: (v) => v !== undefined && v !== null && v !== 1 && typeof v !== "number" && "expected a number",
    });
  }

  /** The config as config.json holds it: every field of the file unchanged, with the defaults of the fields it omits. */
  toJSON(): Json {
    const { raw: _raw, name_or_path: _n, o_proj_bias: _o, qkv_bias: _q, rope_scaling: _r, ...fields } = this;
    return { ...fields, ...this.raw }; // the file's own values as written; defaults for what it left out
  }
}

/** Throws a ConfigError for the first field whose rule returns a reason. */
function refuse(json: Json, where: string, rules: Record<string, (v: unknown) => string | false>): void {
  for (const [name, rule] of Object.entries(rules)) {
    const why = rule(json[name]);
    if (why) throw new ConfigError(`${where}.${name}: ${why} (got ${describe(json[name])})`);
  }
}
