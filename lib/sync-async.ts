/**
 * One body for a synchronous method and its async twin. The body is a generator that does the
 * checks and the bookkeeping, and yields each step that differs between the two (a native call
 * made in place or on a worker, a layer's merge or mergeAsync), receiving that step's result.
 * {@link runSync} performs each step in place; {@link runAsync} awaits each. A step that throws
 * is thrown back into the body, so its `try`/`catch`/`finally` (a rollback, a busy flag) is
 * written once for both twins.
 */

/** Runs `body`, performing each step it yields with `perform` and passing the result back in. */
export function runSync<Step, Result, Return>(body: Generator<Step, Return, Result>, perform: (step: Step) => Result): Return {
  let next = body.next();
  while (!next.done) {
    let result: Result;
    try {
      result = perform(next.value);
    } catch (err) {
      next = body.throw(err);
      continue;
    }
    next = body.next(result);
  }
  return next.value;
}

/** {@link runSync} with asynchronous steps: each one is awaited before the body resumes. */
export async function runAsync<Step, Result, Return>(body: Generator<Step, Return, Result>, perform: (step: Step) => Promise<Result>): Promise<Return> {
  let next = body.next();
  while (!next.done) {
    let result: Result;
    try {
      result = await perform(next.value);
    } catch (err) {
      next = body.throw(err);
      continue;
    }
    next = body.next(result);
  }
  return next.value;
}
