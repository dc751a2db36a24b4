/**
 * torch.distributed-style functions over the default process group (or `options.group`):
 * `await dist.allReduce(t, { op: "avg" })` and so on. Each is one native call; tensors are
 * written in place and belong to the collective until its Promise settles.
 */
import { Tensor, optionsObject } from "../tensor";
import { CollectiveOptions, ProcessGroup, ReduceOp, defaultProcessGroup } from "./process-group";

/** Options of the reductions. */
export interface ReduceOptions extends CollectiveOptions {
  /** sum (default), avg, max, min or product. */
  op?: ReduceOp;
}

/** Options of broadcast. */
export interface BroadcastOptions extends CollectiveOptions {
  /** The rank whose values every rank receives (default 0). */
  src?: number;
}

function groupOf(options: CollectiveOptions | undefined, op: string): ProcessGroup {
  const group = optionsObject(options).group;
  if (group === undefined) return defaultProcessGroup(op);
  if (!(group instanceof ProcessGroup)) throw new TypeError(`group: expected a ProcessGroup, got ${typeof group}`);
  return group;
}

/** Reduces `tensors` in place across ranks; every rank gets the result. */
export function allReduce(tensors: Tensor | Tensor[], options?: ReduceOptions): Promise<void> {
  return groupOf(options, "allReduce").allReduce(tensors, options);
}

/** {@link allReduce}, waiting on this thread. */
export function allReduceSync(tensors: Tensor | Tensor[], options?: ReduceOptions): void {
  groupOf(options, "allReduceSync").allReduceSync(tensors, options);
}

/** Copies rank `src`'s values into `tensors` on every rank. */
export function broadcast(tensors: Tensor | Tensor[], options?: BroadcastOptions): Promise<void> {
  return groupOf(options, "broadcast").broadcast(tensors, options);
}

/** {@link broadcast}, waiting on this thread. */
export function broadcastSync(tensors: Tensor | Tensor[], options?: BroadcastOptions): void {
  groupOf(options, "broadcastSync").broadcastSync(tensors, options);
}

/** Gathers every rank's `input` into `outputs[rank]` on every rank. */
export function allGather(outputs: Tensor[], input: Tensor, options?: CollectiveOptions): Promise<void> {
  return groupOf(options, "allGather").allGather(outputs, input);
}

/** {@link allGather}, waiting on this thread. */
export function allGatherSync(outputs: Tensor[], input: Tensor, options?: CollectiveOptions): void {
  groupOf(options, "allGatherSync").allGatherSync(outputs, input);
}

/** Reduces `inputs[r]` across ranks into rank r's `output`. */
export function reduceScatter(output: Tensor, inputs: Tensor[], options?: ReduceOptions): Promise<void> {
  return groupOf(options, "reduceScatter").reduceScatter(output, inputs, options);
}

/** {@link reduceScatter}, waiting on this thread. */
export function reduceScatterSync(output: Tensor, inputs: Tensor[], options?: ReduceOptions): void {
  groupOf(options, "reduceScatterSync").reduceScatterSync(output, inputs, options);
}

/** Resolves once every rank has reached the barrier. */
export function barrier(options?: CollectiveOptions): Promise<void> {
  return groupOf(options, "barrier").barrier();
}

/** {@link barrier}, waiting on this thread. */
export function barrierSync(options?: CollectiveOptions): void {
  groupOf(options, "barrierSync").barrierSync();
}
