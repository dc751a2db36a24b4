/**
 * Argument checks shared by the optimizers and schedules. They run before anything is changed,
 * and their messages name the argument, what was expected and what was given. They are the only
 * semantic checks of the optimizers: native/optim.cc checks only JS types, list lengths and
 * handles (and what only it sees at step time), so whatever calls the native steps passes values
 * checked here.
 */
import { describe } from "../errors";
import { Tensor, handleOf } from "../tensor";
import { isFloatingDtype } from "../dtype";
import type { NativeTensor } from "../binding";

/** A finite number >= 0 (learning rates, eps, weight decay, momentum). */
export function nonNegative(value: unknown, name: string): number {
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0) {
    throw new RangeError(`${name}: expected a finite number >= 0, got ${describe(value)}`);
  }
  return value;
}

/** A finite number of any sign. */
export function finite(value: unknown, name: string): number {
  if (typeof value !== "number" || !Number.isFinite(value)) {
    throw new RangeError(`${name}: expected a finite number, got ${describe(value)}`);
  }
  return value;
}

/** A coefficient of an exponential moving average: in [0, 1). */
export function beta(value: unknown, name: string): number {
  if (typeof value !== "number" || !(value >= 0 && value < 1)) {
    throw new RangeError(`${name}: expected a number in [0, 1), got ${describe(value)}`);
  }
  return value;
}

/** A boolean flag. */
export function flag(value: unknown, name: string): boolean {
  if (typeof value !== "boolean") throw new TypeError(`${name}: expected a boolean, got ${describe(value)}`);
  return value;
}

/** An integer >= 0. */
export function count(value: unknown, name: string): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`${name}: expected an integer >= 0, got ${describe(value)}`);
  }
  return value;
}

/** A plain options object whose keys are all in `known` (catches PyTorch's snake_case spellings). */
export function options<T extends object>(value: unknown, known: readonly string[], name: string): Partial<T> {
  if (value === undefined) return {};
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new TypeError(`${name}: expected an options object, got ${describe(value)}`);
  }
  for (const key of Object.keys(value)) {
    if (!known.includes(key)) {
      throw new TypeError(`${name}: unknown option ${JSON.stringify(key)}; known options are ${known.join(", ")}`);
    }
  }
  return value as Partial<T>;
}

/**
 * The parameters of an optimizer: distinct floating-point leaf tensors, at least one.
 * Returns them with their native handles.
 */
export function parameterList(params: unknown, name: string): { tensors: Tensor[]; handles: NativeTensor[] } {
  const iterable = params !== null && typeof params === "object" && Symbol.iterator in params;
  if (!iterable || params instanceof Tensor) {
    throw new TypeError(`${name}: expected an array or iterable of Tensors, got ${describe(params)}`);
  }
  const tensors = Array.from(params as Iterable<unknown>) as Tensor[];
  const handles = tensors.map((t, i) => handleOf(t, `${name}[${i}]`));
  if (tensors.length === 0) throw new RangeError(`${name}: the optimizer got an empty parameter list`);
  const seen = new Set<Tensor>();
  tensors.forEach((t, i) => {
    if (!isFloatingDtype(t.dtype)) throw new TypeError(`${name}[${i}]: expected a floating-point tensor, got dtype ${t.dtype}`);
    if (!t.isLeaf) throw new Error(`${name}[${i}]: cannot optimize a non-leaf tensor (the result of an operation)`);
    if (seen.has(t)) throw new Error(`${name}[${i}]: the same tensor appears more than once in the parameter list`);
    seen.add(t);
  });
  return { tensors, handles };
}
