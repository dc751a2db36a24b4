/**
 * What every optimizer shares: its parameter list, the learning rate, per-parameter step counts,
 * and the fused zeroGrad. Subclasses implement the update rule as one native call.
 */
import { native, NativeTensor } from "../binding";
import { Tensor, handleOf } from "../tensor";
import { describe } from "../errors";
import { isFloatingDtype } from "../dtype";
import { count, nonNegative, parameterList } from "./checks";
import { optimNative } from "./native";

/** Base class of {@link AdamW} and {@link SGD}. */
export abstract class Optimizer {
  /** The parameters, in the order given to the constructor. */
  protected readonly tensors: readonly Tensor[];
  /** Their native handles, passed to every native call. */
  protected readonly handles: NativeTensor[];
  /**
   * For each parameter, the number of steps in which it had a gradient. Kept per parameter, as
   * PyTorch does, because a parameter without a gradient is skipped and its bias correction
   * (AdamW) or momentum start (SGD) must not advance.
   */
  protected steps: Float64Array;
  #lr: number;

  protected constructor(params: Iterable<Tensor>, lr: number, name: string) {
    const list = parameterList(params, `${name}: params`);
    this.#lr = nonNegative(lr, `${name}: lr`);
    this.tensors = Object.freeze(list.tensors);
    this.handles = list.handles;
    this.steps = new Float64Array(list.tensors.length);
  }

  /** The parameters this optimizer updates (a copy of the list; the tensors themselves are shared). */
  get params(): Tensor[] {
    return this.tensors.slice();
  }

  /** The learning rate used by the next {@link step}. Must be a finite number >= 0. */
  get lr(): number {
    return this.#lr;
  }
  set lr(value: number) {
    this.#lr = nonNegative(value, "lr");
  }

  /**
   * Clears the gradients of all parameters in one native call.
   *
   * @param setToNone When true (the default, as in PyTorch 2), gradients are dropped (`grad` becomes
   *   null), so parameters that get no gradient in the next backward pass are skipped by {@link step}.
   *   When false they are zeroed in place, keeping their memory.
   */
  zeroGrad(setToNone = true): void {
    if (typeof setToNone !== "boolean") throw new TypeError(`setToNone: expected a boolean, got ${describe(setToNone)}`);
    optimNative.zeroGrad(this.handles, setToNone);
  }

  /** Updates every parameter that has a gradient, in one native call. */
  abstract step(): void;

  /** Step counts checked and copied from a state dict entry list, for {@link loadStateDict}. */
  protected static stepsFrom(entries: readonly ({ step: number } | null)[], where: string): Float64Array {
    return Float64Array.from(entries, (e, i) => (e === null ? 0 : count(e.step, `${where}[${i}].step`)));
  }

  /**
   * A private copy of a saved state tensor, checked against parameter `i` and converted to its
   * dtype and device (as PyTorch's load_state_dict casts state to the parameter).
   */
  protected stateCopy(value: unknown, i: number, where: string): NativeTensor {
    const h = handleOf(value, where);
    const t = value as Tensor;
    const p = this.tensors[i];
    const same = t.shape.length === p.shape.length && t.shape.every((d, k) => d === p.shape[k]);
    if (!same) {
      throw new RangeError(`${where}: has shape [${t.shape.join(", ")}], but parameter ${i} has shape [${p.shape.join(", ")}]`);
    }
    if (!isFloatingDtype(t.dtype)) {
      throw new TypeError(`${where}: expected a floating-point tensor, got dtype ${t.dtype}`);
    }
    // detach: no autograd history; to: the parameter's dtype/device; clone: never alias the caller's tensor.
    return native.clone(native.to(native.detach(h), p.dtype, p.device));
  }

  /** A private copy of a state tensor (stateDict hands out snapshots, never the live buffers). */
  protected static snapshot(h: NativeTensor): Tensor {
    return new Tensor(native.clone(h));
  }
}

/** Checks that `stateDict` is an object saved by an optimizer of `type` ("AdamW", "SGD"). */
export function checkStateDictType(stateDict: unknown, type: string, where: string): void {
  const saved = stateDict as { type?: unknown } | null;
  if (typeof stateDict !== "object" || saved === null || saved.type !== type) {
    throw new TypeError(`${where}: expected the state dict of an ${type} (type "${type}"), got ${describe(saved?.type ?? stateDict)}`);
  }
}

/** Checks that a saved state list has one entry per parameter, each an object or null. */
export function checkStateList(value: unknown, expected: number, where: string): readonly unknown[] {
  if (!Array.isArray(value)) throw new TypeError(`${where}: expected an array with one entry per parameter, got ${describe(value)}`);
  if (value.length !== expected) {
    throw new RangeError(`${where}: has ${value.length} entries, but the optimizer has ${expected} parameters`);
  }
  value.forEach((e, i) => {
    if (e !== null && (typeof e !== "object" || Array.isArray(e))) {
      throw new TypeError(`${where}[${i}]: expected an object or null, got ${describe(e)}`);
    }
  });
  return value;
}
