/** Runs `fn` and returns what it threw; fails the test if it threw nothing or a non-Error. */
export function thrownBy(fn: () => unknown): Error {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  // Errors from the native side come from the addon's realm, so check the tag, not instanceof.
  expect(caught).toBeDefined();
  expect(Object.prototype.toString.call(caught)).toBe("[object Error]");
  return caught as Error;
}

/** The message of the error `fn` throws, after checking that it is an instance of `kind`. */
export function messageOf(fn: () => unknown, kind: new (...args: never[]) => Error): string {
  const err = thrownBy(fn);
  expect(err).toBeInstanceOf(kind);
  return err.message;
}

/** One bad-input case: its test name, the call, the message it must throw and the error class. */
export type ErrorCase = [name: string, fn: () => unknown, message: RegExp, kind: new (...args: never[]) => Error];

/** One `it` per case: `fn` throws an instance of `kind` whose message matches `message`. */
export function itThrowsEach(cases: ErrorCase[]): void {
  for (const [name, fn, message, kind] of cases) {
    it(name, () => {
      let thrown: unknown;
      try {
        fn();
      } catch (e) {
        thrown = e;
      }
      expect(thrown).toBeInstanceOf(kind);
      expect((thrown as Error).message).toMatch(message);
    });
  }
}
