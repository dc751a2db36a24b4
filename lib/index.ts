/**
 * torch-lora: LoRA fine-tuning for Node.js over libtorch.
 *
 * @packageDocumentation
 */
export { Tensor, tensor, zeros, ones, empty, full, rand, randn, arange, cat, stack, where, oneHot, noGrad, isGradEnabled, manualSeed } from "./tensor";
export type { TensorOptions, TensorData, Operand, DispersionOptions } from "./tensor";
export type { Dtype, Device } from "./dtype";
export { crossEntropy, mseLoss, linearCrossEntropy } from "./functional";
export { tidy, tidyAsync, keep } from "./scope";
export type { Reduction, LinearCrossEntropyOptions } from "./functional";
export { layerNorm, rmsNorm, scaledDotProductAttention, embedding } from "./functional";
export type { AttentionOptions } from "./functional";
export { memoryStats } from "./memory";
export type { MemoryStats } from "./memory";
export { TorchLoraError, StateError, ConfigError, FormatError } from "./errors";
export * as init from "./init";
export * as cuda from "./cuda";
export * as nn from "./nn";
export * as lora from "./lora";
export * as io from "./io";
export * as optim from "./optim";
export * as dist from "./dist";
export * as models from "./models";
