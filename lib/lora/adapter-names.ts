/**
 * The one rule for adapter names, and the one "no such adapter" error. A name becomes a state-dict
 * key segment (`lora_A.<name>.weight`) and, when saved, a folder name: a dot would split the key,
 * and a slash, backslash or NUL would fail (or escape the folder) half-way through a save. So every
 * entry point checks names with this rule before it changes or writes anything.
 */
import { describe } from "../errors";

/** Characters an adapter name may not hold: the key separator, path separators and NUL. */
const FORBIDDEN = /[./\\\0]/;

/** Throws a TypeError unless `name` is a valid adapter name; returns it typed. */
export function checkAdapterName(name: unknown, argument = "adapterName"): string {
  if (typeof name !== "string" || name.length === 0 || FORBIDDEN.test(name)) {
    throw new TypeError(`${argument}: expected a non-empty name without dots, slashes, backslashes or NUL characters, got ${describe(name)}`);
  }
  return name;
}

/** The RangeError for an adapter name the model does not hold, listing those it does. */
export function noSuchAdapter(name: unknown, existing: string[], argument = "adapterName"): RangeError {
  return new RangeError(`${argument}: no adapter ${describe(name)} (adapters: ${existing.join(", ") || "none"})`);
}

/** Checks `name` by the rule, then that it is one of `existing`. */
export function requireAdapter(name: unknown, existing: string[], argument = "adapterName"): string {
  const checked = checkAdapterName(name, argument);
  if (!existing.includes(checked)) throw noSuchAdapter(checked, existing, argument);
  return checked;
}
