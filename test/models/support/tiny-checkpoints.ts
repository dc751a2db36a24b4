/**
 * What the checkpoint tests share: tiny configs of each family, with the fields where the
 * families differ set away from their defaults, and a left-padded batch with its attention mask
 * and the labels of transformers' shifted loss.
 */
import { tensor } from "../../../lib";

export const TINY_GPT2 = {
  model_type: "gpt2",
  vocab_size: 61,
  n_positions: 32,
  n_embd: 24,
  n_layer: 2,
  n_head: 3,
  activation_function: "gelu_new",
  layer_norm_epsilon: 1e-5,
};

/** Grouped-query attention, a head_dim of its own, biases, a rope_theta, untied embeddings. */
export const TINY_LLAMA = {
  model_type: "llama",
  vocab_size: 53,
  hidden_size: 32,
  intermediate_size: 40,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  head_dim: 12,
  rms_norm_eps: 1e-5,
  rope_theta: 500000,
  attention_bias: true,
  mlp_bias: true,
  tie_word_embeddings: false,
};

/** Tied embeddings, one key/value head, Qwen2's q/k/v biases. */
export const TINY_QWEN2 = {
  model_type: "qwen2",
  vocab_size: 47,
  hidden_size: 16,
  intermediate_size: 24,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 1,
  tie_word_embeddings: true,
  rope_theta: 1e6,
};

/** Two rows; row 0 is left-padded by two tokens. */
export const PADDED_IDS = [
  [0, 0, 5, 17, 3, 9, 22],
  [4, 11, 30, 2, 8, 1, 13],
];
export const PADDED_MASK = [
  [0, 0, 1, 1, 1, 1, 1],
  [1, 1, 1, 1, 1, 1, 1],
];
/**
 * The labels of a shifted loss over {@link PADDED_IDS}: -100 at padding and at the token predicted
 * from a padding position (transformers' logits there come from a fully masked attention row: it
 * averages every key, torch-lora gives zeros; no one trains on them).
 */
export const PADDED_LABELS = PADDED_IDS.map((row, b) => row.map((t, i) => (PADDED_MASK[b][i] && (i === 0 || PADDED_MASK[b][i - 1]) ? t : -100)));

export const paddedIds = () => tensor(PADDED_IDS, { dtype: "int64" });
export const paddedMask = () => tensor(PADDED_MASK, { dtype: "int64" });
