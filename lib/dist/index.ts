/**
 * Data-parallel training across processes and machines over libtorch's c10d (Gloo on CPU, NCCL
 * on CUDA builds): process groups, collectives, DataParallel, a DistributedSampler, and the
 * runtime of `torch-lora launch`. See docs/distributed.md.
 */
export {
  ProcessGroup,
  initProcessGroup,
  destroyProcessGroup,
  isInitialized,
  isAvailable,
  availableBackends,
  getRank,
  getWorldSize,
  isMainProcess,
} from "./process-group";
export type { Backend, ReduceOp, InitProcessGroupOptions, CollectiveOptions } from "./process-group";
export {
  allReduce,
  allReduceSync,
  broadcast,
  broadcastSync,
  allGather,
  allGatherSync,
  reduceScatter,
  reduceScatterSync,
  barrier,
  barrierSync,
} from "./collectives";
export type { ReduceOptions, BroadcastOptions } from "./collectives";
export { DataParallel } from "./data-parallel";
export type { DataParallelOptions, ParameterSource } from "./data-parallel";
export { DistributedSampler } from "./sampler";
export type { DistributedSamplerOptions } from "./sampler";
export { DistributedError } from "./errors";
export { setNumThreads, getNumThreads, localDevice } from "./threads";
export { launch } from "./launch";
export type { LaunchOptions, LaunchResult } from "./launch";
