/** LoRA: configuration, layers and adapter injection. */
export { injectAdapter, LoraModel } from "./model";
export { LoraLinear, LoraEmbedding, LoraLayer, LoraFactor } from "./layers";
export type { AdapterSettings, MergeOptions } from "./layers";
export { resolveLoraConfig, matchesModuleName, layerSettings } from "./config";
export type { LoraConfig, ResolvedLoraConfig, LinearInit, EmbeddingInit } from "./config";
