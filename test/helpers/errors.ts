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
