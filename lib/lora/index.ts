/** LoRA: configuration, layers and adapter injection. */
export { injectAdapter, LoraModel } from "./model";
export type { ForwardArgs, ForwardResult } from "./model";
export { LoraLinear, LoraEmbedding, LoraLayer, LoraFactor } from "./layers";
export type { AdapterSettings, MergeOptions } from "./layers";
export { resolveLoraConfig, matchesModuleName, layerSettings } from "./config";
export type { LoraConfig, ResolvedLoraConfig, LinearInit, EmbeddingInit } from "./config";
export { saveAdapter, saveAdapterAsync, loadAdapter, loadAdapterAsync, locateAdapter, readAdapterConfig } from "./peft-format";
export type { SaveAdapterOptions, LoadAdapterOptions, AdapterLocation } from "./peft-format";
export { ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME, PEFT_KEY_PREFIX, toPeftConfigJson, fromPeftConfigJson } from "./peft-config";
export type { PeftConfigReading } from "./peft-config";
export { describeAdapterModules, planWeightMerge, mergeWeights } from "./peft-merge";
export type { AdapterModuleInfo, PlannedMerge, MergeWeightsOptions, TensorShapeInfo } from "./peft-merge";
export { isWeightAwareInit, rewritesBaseWeight, checkWeightAwareInit } from "./init-strategies";
export type { WeightAwareInit } from "./init-strategies";
export { addWeightedAdapter } from "./combine";
export type { CombinationType, WeightedAdapterOptions } from "./combine";
export { convertToPlainLora } from "./weight-conversion";
