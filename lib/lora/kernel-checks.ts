/**
 * Why a fused LoRA forward or merge failed, in the user's terms. The native kernels (native/lora.cc) check
 * only what memory safety needs and leave the rest to libtorch, whose messages name no argument;
 * when a call fails, these checks run (the hot path pays nothing) and throw the error that names
 * the argument or adapter at fault, what was expected and what was given. When none applies, the
 * caller rethrows the native error unchanged.
 */
import { StateError } from "../errors";
import { shapeText } from "../op-checks";
import { Tensor } from "../tensor";

/** One adapter of a layer as the forward ran it. */
export interface ForwardAdapter {
  name: string;
  A: Tensor;
  B: Tensor;
}

/** How a layer kind's factors are named (PEFT's names). */
type FactorNames = [string, string];
const LINEAR: FactorNames = ["lora_A", "lora_B"];
const EMBEDDING: FactorNames = ["lora_embedding_A", "lora_embedding_B"];

/**
 * Names a disposed factor by its adapter. Returns false when a tensor the native error already
 * names well (the input, the weight) is disposed: its properties cannot be read to explain more.
 */
function checkAlive(tensors: Tensor[], adapters: ForwardAdapter[], names: FactorNames): boolean {
  if (tensors.some((t) => t.isDisposed)) return false;
  for (const { name, A, B } of adapters) {
    for (const [label, t] of [
      [names[0], A],
      [names[1], B],
    ] as const) {
      if (t.isDisposed) throw new StateError(`adapter "${name}": ${label}: the Tensor was disposed and can no longer be used`);
    }
  }
  return true;
}

function checkOnDevice(t: Tensor, weight: Tensor, label: string): void {
  if (t.device !== weight.device) throw new TypeError(`${label}: expected a tensor on ${weight.device} (where the layer's weight is), got one on ${t.device}`);
}

function checkLike(t: Tensor, weight: Tensor, label: string): void {
  if (t.dtype !== weight.dtype) throw new TypeError(`${label}: expected dtype ${weight.dtype} (the layer's weight dtype), got ${t.dtype}`);
  checkOnDevice(t, weight, label);
}

/**
 * Factors share the weight's dtype, or are both float32 on a float16/bfloat16 weight (adapters
 * kept in full precision on a half-precision base, as PEFT's autocast_adapter_dtype does).
 */
function checkFactorKinds(weight: Tensor, adapters: ForwardAdapter[], names: FactorNames): void {
  const halfBase = weight.dtype === "float16" || weight.dtype === "bfloat16";
  for (const { name, A, B } of adapters) {
    const wide = halfBase && A.dtype === "float32" && B.dtype === "float32";
    const check = wide ? checkOnDevice : checkLike;
    check(A, weight, `adapter "${name}": ${names[0]}`);
    check(B, weight, `adapter "${name}": ${names[1]}`);
  }
}

function fitsLowRank(A: Tensor, B: Tensor, inputs: number, outputs: number): boolean {
  return A.shape.length === 2 && B.shape.length === 2 && A.shape[1] === inputs && B.shape[0] === outputs && A.shape[0] === B.shape[1];
}

/** Throws the worded error for a failed LoRA Linear forward, if its arguments explain the failure. */
export function explainLinearFailure(input: Tensor, weight: Tensor, fanInFanOut: boolean, adapters: ForwardAdapter[]): void {
  if (!checkAlive([input, weight], adapters, LINEAR)) return;
  checkLike(input, weight, "input");
  checkFactorKinds(weight, adapters, LINEAR);
  const [inputs, outputs] = fanInFanOut ? weight.shape : [weight.shape[1], weight.shape[0]];
  if (input.shape.length < 1 || input.shape[input.shape.length - 1] !== inputs) {
    throw new RangeError(`input: expected last dimension ${inputs} (in_features), got shape ${shapeText(input.shape)}`);
  }
  for (const { name, A, B } of adapters) {
    if (!fitsLowRank(A, B, inputs, outputs)) {
      throw new RangeError(`adapter "${name}": lora_A ${shapeText(A.shape)} and lora_B ${shapeText(B.shape)} do not fit a Linear(${inputs}, ${outputs})`);
    }
  }
}

/** Throws the worded error for a failed LoRA Embedding forward, if its arguments explain the failure. */
export function explainEmbeddingFailure(ids: Tensor, weight: Tensor, adapters: ForwardAdapter[]): void {
  if (!checkAlive([ids, weight], adapters, EMBEDDING)) return;
  checkOnDevice(ids, weight, "ids");
  checkFactorKinds(weight, adapters, EMBEDDING);
  const [rows, dim] = weight.shape;
  for (const { name, A, B } of adapters) {
    if (!fitsLowRank(A, B, rows, dim)) {
      throw new RangeError(
        `adapter "${name}": lora_embedding_A ${shapeText(A.shape)} and lora_embedding_B ${shapeText(B.shape)} do not fit an Embedding(${rows}, ${dim})`,
      );
    }
  }
}

/**
 * Throws the worded error for a failed merge, if its factors explain it (the merge kernel refuses
 * a delta that does not fit the weight, or a non-finite result, in its own words).
 */
export function explainMergeFailure(kind: "linear" | "embedding", adapters: ForwardAdapter[]): void {
  checkAlive([], adapters, kind === "embedding" ? EMBEDDING : LINEAR);
}
