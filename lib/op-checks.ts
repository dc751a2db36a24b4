/**
 * Shared argument checks of the functional ops. The native call runs first and, only when it
 * fails, the op's own checks run to turn libtorch's terse text into a message that names the
 * op, the argument and the shapes: the hot path pays for no JS-side shape reads.
 */
import { describe } from "./errors";
import { Tensor } from "./tensor";

/** `[2, 3]`: a shape as messages print it. */
export function shapeText(shape: readonly number[]): string {
  return `[${shape.join(", ")}]`;
}

/** Throws a TypeError naming `op` and `arg` unless `value` is a Tensor. */
export function tensorArg(op: string, arg: string, value: unknown): Tensor {
  if (!(value instanceof Tensor)) throw new TypeError(`${op}: ${arg}: expected a Tensor, got ${describe(value)}`);
  return value;
}

/** Throws unless `value` is a Tensor, null or undefined; returns it or null. */
export function optionalTensorArg(op: string, arg: string, value: unknown): Tensor | null {
  return value === undefined || value === null ? null : tensorArg(op, arg, value);
}

/** Throws unless every tensor lives on the device of the first. */
export function checkSameDevice(op: string, named: [string, Tensor | null][]): void {
  const present = named.filter((e): e is [string, Tensor] => e[1] !== null);
  const [firstName, first] = present[0];
  for (const [name, t] of present.slice(1)) {
    if (t.device !== first.device)
      throw new Error(`${op}: ${name} is on ${t.device} but ${firstName} is on ${first.device}; move it with to("${first.device}")`);
  }
}

/** Throws unless every tensor has the dtype of the first. */
export function checkSameDtype(op: string, named: [string, Tensor | null][]): void {
  const present = named.filter((e): e is [string, Tensor] => e[1] !== null);
  const [firstName, first] = present[0];
  for (const [name, t] of present.slice(1)) {
    if (t.dtype !== first.dtype) throw new TypeError(`${op}: ${name} has dtype ${t.dtype} but ${firstName} has ${first.dtype}`);
  }
}

/**
 * Runs `call`; when it throws, runs `explain` (which throws the op's own worded error when it
 * finds the cause) and otherwise rethrows libtorch's error prefixed with the op's name.
 */
export function withOpChecks<T>(op: string, call: () => T, explain: () => void): T {
  try {
    return call();
  } catch (e) {
    explain();
    // Not `instanceof Error`: errors made by the addon may come from another realm (jest, vm).
    const error = e as { message?: unknown };
    if (typeof error?.message === "string" && !error.message.startsWith(op)) error.message = `${op}: ${error.message}`;
    throw e;
  }
}

/** PyTorch's broadcasting rule: can `from` broadcast to `to`? */
export function broadcastsTo(from: readonly number[], to: readonly number[]): boolean {
  if (from.length > to.length) return false;
  const offset = to.length - from.length;
  return from.every((d, i) => d === 1 || d === to[offset + i]);
}
