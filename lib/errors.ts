/**
 * Error classes of torch-lora. Native errors arrive as plain `Error`s carrying libtorch's
 * message; argument checks in the facade throw `TypeError`/`RangeError` or these classes.
 */

/**
 * What an error says about the one value at fault, for code that acts on it rather than on the
 * message's words (a form that highlights a field, a tool that maps names to its own).
 */
export interface ErrorDetails {
  /** The argument or configuration field at fault, as named in the message without its owner: "r", 'rankPattern["q"]', "lora_alpha". */
  field?: string;
  /** What the field should hold, in the message's words: "an integer >= 1". */
  expected?: string;
  /** The value given (the message describes it with {@link describe}). */
  got?: unknown;
}

/** Base class of the errors torch-lora throws for a state or operation that is not allowed. */
export class TorchLoraError extends Error {
  /** The argument or field at fault, when one is. */
  declare readonly field?: string;
  /** What the field should hold, when the error says. */
  declare readonly expected?: string;
  /** The value given, when the error names one (`"got" in err` tells an undefined value from none). */
  declare readonly got?: unknown;

  /** `details` are kept as the error's fields; the message stays the caller's (see {@link expectedGot}). */
  constructor(message: string, details: ErrorDetails = {}) {
    super(message);
    this.name = new.target.name;
    if (details.field !== undefined) this.field = details.field;
    if (details.expected !== undefined) this.expected = details.expected;
    if ("got" in details) this.got = details.got;
  }
}

/** An operation conflicts with the module's current state (merged adapter, async merge in flight, ...). */
export class StateError extends TorchLoraError {}

/** A configuration value is invalid; the message names the field. */
export class ConfigError extends TorchLoraError {}

/** A file is malformed or does not match what it should hold. */
export class FormatError extends TorchLoraError {}

/** A short description of a value for error messages: `the string "x"`, `3.5`, `an object`. */
export function describe(value: unknown): string {
  if (value === null) return "null";
  if (value === undefined) return "undefined";
  if (typeof value === "string") return `the string ${JSON.stringify(value.length > 60 ? value.slice(0, 57) + "..." : value)}`;
  if (typeof value === "number" || typeof value === "boolean" || typeof value === "bigint") return String(value);
  if (Array.isArray(value)) return `an array of length ${value.length}`;
  if (typeof value === "function") return "a function";
  const name = (value as object).constructor?.name;
  return name && name !== "Object" ? `a ${name}` : "an object";
}

/** The usual wording of a field's problem from its structured parts: `expected <expected>, got <describe(got)>`. */
export function expectedGot(expected: string, got: unknown): string {
  return `expected ${expected}, got ${describe(got)}`;
}
