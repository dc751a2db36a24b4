/**
 * Tensor scopes, after TensorFlow.js's `tf.tidy`: tensors created inside a scope and not
 * returned from it are disposed when it ends, so a training step frees its intermediates at
 * once instead of leaving them to the garbage collector.
 *
 * Disposing a tensor only drops that JS handle's reference to the libtorch tensor. Tensors
 * that autograd saved for backward are held by the graph itself, so freeing the handles of a
 * forward's intermediates never frees memory backward still needs: `tidy` around the forward
 * and the loss, `backward()` after it, is correct.
 */
import { describe } from "./errors";
import { Scope, currentScope, runInAsyncScope, runInScope } from "./scope-tracking";
import { native } from "./binding";
import { Tensor, handleOf } from "./tensor";
import { isPromiseLike } from "./sync-or-async";

const kept = new WeakSet<object>();
const NOTHING_RETURNED: ReadonlySet<Tensor> = new Set();

/**
 * Marks `t` to survive every scope it was created in: no scope disposes it (dispose it
 * yourself, or leave it to the garbage collector). Returns `t`.
 *
 * @example const running = tidy(() => { const m = x.mean(); keep(m); return m.add(1); });
 */
export function keep<T extends Tensor>(t: T): T {
  if (!(t instanceof Tensor)) throw new TypeError(`keep: expected a Tensor, got ${describe(t)}`);
  kept.add(t);
  native.reportExternalMemory(handleOf(t)); // now the collector's to free: let V8 see its bytes
  return t;
}

/** Every Tensor inside `value` (arrays, plain objects and Map values, any depth). */
function tensorsIn(value: unknown, out: Set<Tensor>, seen: Set<object>): Set<Tensor> {
  if (value === null || typeof value !== "object" || seen.has(value)) return out;
  seen.add(value);
  if (value instanceof Tensor) {
    out.add(value);
  } else if (Array.isArray(value)) {
    for (const v of value) tensorsIn(v, out, seen);
  } else if (value instanceof Map) {
    for (const v of value.values()) tensorsIn(v, out, seen);
  } else {
    const proto = Object.getPrototypeOf(value);
    if (proto === Object.prototype || proto === null) for (const v of Object.values(value)) tensorsIn(v, out, seen);
  }
  return out;
}

/** Ends `scope`: disposes what it tracked except kept and returned tensors; returned ones move to the enclosing scope. */
function close(scope: Scope, result: unknown): void {
  scope.open = false;
  const returned = result !== null && typeof result === "object" ? tensorsIn(result, new Set(), new Set()) : NOTHING_RETURNED;
  let parent = scope.parent;
  while (parent !== null && !parent.open) parent = parent.parent;
  for (const t of scope.tensors) {
    if (!returned.has(t as Tensor)) {
      if (!kept.has(t)) t.dispose();
    } else if (parent !== null) {
      parent.tensors.push(t);
    } else if (!(t as Tensor).isDisposed) {
      native.reportExternalMemory(handleOf(t)); // leaves every scope: let V8 see its bytes
    }
  }
  scope.tensors.length = 0;
}

/**
 * Runs `fn` and disposes every tensor created while it ran, except the tensors it returns (a
 * Tensor, or Tensors inside a returned array, plain object or Map) and those marked with
 * {@link keep}. Also disposes them when `fn` throws. Scopes nest: the returned tensors belong
 * to the enclosing scope, if any. Tensors created outside the scope (parameters, inputs) are
 * never touched, and module parameters, LoRA factors and optimizer state created inside one
 * are kept.
 *
 * `fn` must be synchronous; use {@link tidyAsync} for an async function.
 *
 * @example
 * const loss = tidy(() => crossEntropy(model.forward(ids) as Tensor, targets)); // intermediates freed
 * loss.backward(); loss.dispose();
 */
export function tidy<T>(fn: () => T): T {
  if (typeof fn !== "function") throw new TypeError(`fn: expected a function, got ${describe(fn)}`);
  const scope = new Scope(currentScope());
  let result: T | undefined;
  try {
    result = runInScope(scope, fn);
    if (isPromiseLike(result)) {
      throw new TypeError("tidy: fn returned a Promise; use tidyAsync(fn) for an async function (tidy cannot follow a scope across await)");
    }
    return result;
  } finally {
    close(scope, isPromiseLike(result) ? undefined : result);
  }
}

/**
 * The async form of {@link tidy}: tensors created by `fn`, also after an `await`, and not in
 * its resolved value, are disposed when its promise settles. Concurrent async scopes do not
 * mix up their tensors: each follows its own continuations (through `AsyncLocalStorage`).
 *
 * Cost: while any async scope is pending, creating a tensor costs about 0.1 µs more (reading
 * the async context); with none pending, nothing.
 *
 * @example const logits = await tidyAsync(async () => { await loadBatch(); return model.forward(ids) as Tensor; });
 */
export async function tidyAsync<T>(fn: () => Promise<T>): Promise<T> {
  if (typeof fn !== "function") throw new TypeError(`fn: expected a function, got ${describe(fn)}`);
  const scope = new Scope(currentScope());
  let result: T | undefined;
  try {
    result = await runInAsyncScope(scope, fn);
    return result;
  } finally {
    close(scope, result);
  }
}
