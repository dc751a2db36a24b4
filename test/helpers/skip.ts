/**
 * The suite's convention for tests that cannot run here: they are registered as skipped (never
 * passed by an early return), with `[skip: <reason>]` in their title or in the title of a block
 * around them. test/reporters/skip-summary.js counts them by that reason at the end of a run
 * and, when CI=true (where every dependency is installed), fails the run on any skip whose
 * reason is not {@link NO_GPU}. A reason is short and says what is missing; a longer
 * explanation, if any, goes to stderr.
 */

/** No GPU to run on (the only reason CI accepts: its machines have none). */
export const NO_GPU = "no GPU";

/** The reference Python cannot import torch (test/helpers/python.ts). */
export const NO_TORCH = "no PyTorch to compare against";

/** The reference Python cannot run at all (comparisons that need only its standard library). */
export const NO_PYTHON = "no Python to compare against";

/** The environment of transformers and PEFT (scripts/lib/hf-reference.js) is not installed. */
export const NO_HF = "no transformers and PEFT to compare against";

/** The package is not built here (dist/ or the native addon). */
export const NOT_BUILT = "not built (node scripts/setup.js)";

/** `title` tagged with `reason` when there is one (the test is skipped); else `title` unchanged. */
export function skipTitle(title: string, reason: string | null): string {
  return reason === null ? title : `${title} [skip: ${reason}]`;
}

/** `it` when `reason` is null, else `it.skip` with the reason in its title. */
export function itUnless(reason: string | null, title: string, fn: jest.ProvidesCallback, timeout?: number): void {
  (reason === null ? it : it.skip)(skipTitle(title, reason), fn, timeout);
}

/** `describe` when `reason` is null, else `describe.skip` with the reason in its title. */
export function describeUnless(reason: string | null, title: string, body: () => void): void {
  (reason === null ? describe : describe.skip)(skipTitle(title, reason), body);
}
