/**
 * Error classes of torch-lora. Native errors arrive as plain `Error`s carrying libtorch's
 * message; argument checks in the facade throw `TypeError`/`RangeError` or these classes.
 */

/** Base class of the errors torch-lora throws for a state or operation that is not allowed. */
export class TorchLoraError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
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
