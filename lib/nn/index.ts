/** PyTorch-like modules (`torch.nn`). */
export { Module, ModuleDict, ModuleList, ParameterDict, Sequential, copyInto } from "./module";
export { Linear, Conv1D, Embedding } from "./layers";
export type { FactoryOptions } from "./layers";
export { Dropout, ReLU, GELU, Tanh, Sigmoid, SiLU, Identity, gelu } from "./activation";
export type { GeluApproximation } from "./activation";
export { LayerNorm, RMSNorm } from "./norm";
