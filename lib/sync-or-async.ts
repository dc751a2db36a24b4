/**
 * One body for a function's synchronous and asynchronous twins. The body is a generator that
 * plans, yields each slow step (a file read, a write, a native call on a worker) in both its
 * forms, and commits; {@link runSync} runs every step's synchronous form, {@link runAsync}
 * awaits its asynchronous form. So the twins cannot drift apart: only the steps differ.
 *
 * @example
 * function* loadBody(file: string): TwinBody<Config> {
 *   const text = yield* step(() => readTextFileSync(file), () => readTextFile(file));
 *   return parse(text);
 * }
 * export const load = (file: string) => runSync(loadBody(file));
 * export const loadAsync = (file: string) => runAsync(loadBody(file));
 */

/** A slow operation in both forms; they must do the same thing. */
export interface TwinStep<T> {
  sync(): T;
  async(): Promise<T>;
}

/** A body: yields steps, is resumed with each step's result (or its error thrown at the yield), returns the result. */
export type TwinBody<R> = Generator<TwinStep<unknown>, R, unknown>;

/** Yields a step from a body and gives back its result, typed: `const x = yield* step(...)`. */
export function* step<T>(sync: () => T, async: () => Promise<T>): Generator<TwinStep<unknown>, T, unknown> {
  return (yield { sync, async }) as T;
}

/** Runs `body` with every step's synchronous form; a step's error is thrown into the body, where it may be caught. */
export function runSync<R>(body: TwinBody<R>): R {
  let next = body.next();
  while (!next.done) {
    let result: unknown;
    try {
      result = next.value.sync();
    } catch (err) {
      next = body.throw(err);
      continue;
    }
    next = body.next(result);
  }
  return next.value;
}

/** Runs `body` awaiting every step's asynchronous form; an error anywhere rejects the Promise. */
export async function runAsync<R>(body: TwinBody<R>): Promise<R> {
  let next = body.next();
  while (!next.done) {
    let result: unknown;
    try {
      result = await next.value.async();
    } catch (err) {
      next = body.throw(err);
      continue;
    }
    next = body.next(result);
  }
  return next.value;
}

/** Whether `value` is a promise or any other thenable. */
export function isPromiseLike(value: unknown): value is PromiseLike<unknown> {
  return (typeof value === "object" || typeof value === "function") && value !== null && typeof (value as PromiseLike<unknown>).then === "function";
}

/**
 * Runs `fn`, then `cleanUp`: at once when `fn` throws or returns a plain value, or when the
 * promise it returns settles (the returned promise then settles as `fn`'s did, after `cleanUp`).
 * For state held while a callback runs, whether the callback is synchronous or not. An error
 * `cleanUp` throws replaces `fn`'s outcome.
 */
export function runThenCleanUp<T>(fn: () => T, cleanUp: () => void): T {
  let result: T;
  try {
    result = fn();
  } catch (err) {
    cleanUp();
    throw err;
  }
  if (isPromiseLike(result)) return Promise.resolve(result).finally(cleanUp) as T;
  cleanUp();
  return result;
}
