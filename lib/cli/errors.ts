/**
 * Exit codes of the command line: 0 success, 1 a user error (bad usage, a file that is missing or
 * does not fit), 2 an internal error (a bug or a failure the user cannot fix by changing input).
 */
import { TorchLoraError } from "../errors";

export const EXIT_OK = 0;
export const EXIT_USER = 1;
export const EXIT_INTERNAL = 2;

/** A mistake in how the command was called or in its inputs; reported without a stack trace. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** Node's file errors (ENOENT, EACCES, EISDIR, ...) come from paths the user gave. */
function isFileError(err: unknown): err is NodeJS.ErrnoException {
  return err instanceof Error && typeof (err as NodeJS.ErrnoException).code === "string" && /^E[A-Z]+$/.test((err as NodeJS.ErrnoException).code!);
}

/** The exit code for an error thrown by a command. */
export function exitCodeFor(err: unknown): number {
  if (err instanceof UsageError || err instanceof TorchLoraError || isFileError(err)) return EXIT_USER;
  return EXIT_INTERNAL;
}
