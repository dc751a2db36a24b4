/**
 * Optimizers for training with torch-lora: AdamW and SGD (each step one native call over all
 * parameters), gradient clipping, and learning-rate schedules. Uses tensors only.
 *
 * @packageDocumentation
 */
export { Optimizer } from "./optimizer";
export { AdamW } from "./adamw";
export type { AdamWOptions, AdamWHyperParams, AdamWParamState, AdamWStateDict } from "./adamw";
export { SGD } from "./sgd";
export type { SGDOptions, SGDHyperParams, SGDParamState, SGDStateDict } from "./sgd";
export { clipGradNorm } from "./clip";
export { linearWarmupCosine, LRScheduler } from "./schedule";
export type { LrLambda, WarmupCosineOptions, HasLr } from "./schedule";
