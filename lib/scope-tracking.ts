/**
 * Which tensor scope is current, and the hook every new Tensor calls. Kept apart from
 * `scope.ts` (the public API) so that `tensor.ts` can call {@link trackTensor} without an
 * import cycle.
 *
 * Two ways to know the current scope, chosen for the cost on the hot path (every op creates
 * a Tensor, and so calls {@link trackTensor}):
 * - synchronous scopes set a module variable: about 1 ns per tensor;
 * - asynchronous scopes need the scope to follow their continuations across `await`, while
 *   other async scopes interleave with them: an `AsyncLocalStorage`. Reading it costs about
 *   90 ns per tensor inside a store (Node 20), so it is read only while an async scope is
 *   alive; a program that never uses one never pays for it.
 *
 * While a synchronous scope runs, new tensors' bytes are not reported to V8 as external
 * memory: the scope frees them itself, and reporting a step's activations (often more than
 * V8's 64 MiB external-memory step) started a needless mark-compact in every step. A tensor
 * that outlives its scopes (returned from the outermost one, or kept) is reported then.
 */
import { AsyncLocalStorage } from "async_hooks";
import { native } from "./binding";

/** Anything a scope can free: a Tensor. */
export interface ScopedTensor {
  dispose(): void;
}

/** One `tidy`: the tensors created while it runs, and the scope around it. */
export class Scope {
  readonly tensors: ScopedTensor[] = [];
  open = true;
  constructor(readonly parent: Scope | null) {}
}

let syncScope: Scope | null = null;
let asyncScopesAlive = 0;
let asyncStore: AsyncLocalStorage<Scope> | null = null;

/** The nearest scope still open, from `s` outwards (a timer started in a scope may fire after it closed). */
function openScope(s: Scope | null): Scope | null {
  while (s !== null && !s.open) s = s.parent;
  return s;
}

/** The scope new tensors belong to, or null outside every scope. */
export function currentScope(): Scope | null {
  if (asyncScopesAlive === 0) return syncScope;
  return openScope(asyncStore!.getStore() ?? syncScope);
}

/** Called by the Tensor constructor: records `t` in the current scope, if any. */
export function trackTensor(t: ScopedTensor): void {
  if (asyncScopesAlive === 0) {
    if (syncScope !== null) syncScope.tensors.push(t);
    return;
  }
  const s = openScope(asyncStore!.getStore() ?? syncScope);
  if (s !== null) s.tensors.push(t);
}

/** Runs `fn` synchronously with `scope` current. */
export function runInScope<T>(scope: Scope, fn: () => T): T {
  const previous = syncScope;
  syncScope = scope;
  const wasPaused = native.pauseExternalMemoryReports(true);
  try {
    // While an async scope is alive its store would shadow the module variable: enter a store too.
    return asyncScopesAlive === 0 ? fn() : asyncStore!.run(scope, fn);
  } finally {
    native.pauseExternalMemoryReports(wasPaused);
    syncScope = previous;
  }
}

/** Runs the async `fn` with `scope` current in it and in all its continuations. */
export async function runInAsyncScope<T>(scope: Scope, fn: () => Promise<T>): Promise<T> {
  asyncStore ??= new AsyncLocalStorage<Scope>();
  asyncScopesAlive++;
  try {
    return await asyncStore.run(scope, fn);
  } finally {
    // The last pending async scope: switch the store off, so that promise tracking (which
    // AsyncLocalStorage turns on for the whole process) stops costing unrelated async code.
    // A timer a closed scope left behind then sees no scope, which is what it should see.
    if (--asyncScopesAlive === 0) asyncStore.disable();
  }
}
