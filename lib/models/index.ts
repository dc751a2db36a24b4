/**
 * Pretrained decoder-only transformers in Hugging Face transformers' layout: GPT-2 and the
 * Llama family (Llama, Mistral, Qwen2), their configs, loading and saving, and generation.
 *
 * @packageDocumentation
 */
export { GPT2Config, LlamaConfig, LLAMA_MODEL_TYPES } from "./config";
export type { TokenIds } from "./config";
export { GPT2LMHeadModel, GPT2Model, GPT2Block, GPT2Attention, GPT2MLP } from "./gpt2";
export type { ModelFactoryOptions } from "./gpt2";
export { LlamaForCausalLM, LlamaModel, LlamaDecoderLayer, LlamaAttention, LlamaMLP, LlamaRotaryEmbedding } from "./llama";
export { CausalLM } from "./causal-lm";
export type { GenerateOptions } from "./causal-lm";
export { KVCache } from "./context";
export type { CausalLMForwardOptions } from "./context";
export type { SamplingOptions } from "./sampling";
export { fromPretrained, modelFromConfig, SUPPORTED_MODEL_TYPES } from "./load";
export type { FromPretrainedOptions, LoadedModel, LoadingInfo } from "./load";
export type { SavePretrainedOptions } from "./save";
export { causalLmLoss } from "./loss";
export { loadTokenizer, PretrainedTokenizer } from "./tokenizer";
export type { EncodeOptions, DecodeOptions, EncodeBatchOptions, BatchEncoding, SpecialToken } from "./tokenizer";
