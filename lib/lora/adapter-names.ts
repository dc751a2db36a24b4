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

/** How many of the existing names the message lists before it only counts them. */
const LISTED = 20;

/**
 * The RangeError for an adapter name that is not held, listing those that are:
 * `adapterName: no adapter the string "x" (adapters: a, b)`.
 *
 * @param argument The argument that gave the name.
 * @param where Where the adapter was looked for, when it is not the model ("this layer", a folder).
 */
export function noSuchAdapter(name: unknown, existing: readonly string[], argument = "adapterName", where?: string): RangeError {
  const listed = existing.slice(0, LISTED).join(", ") + (existing.length > LISTED ? `, ... (${existing.length} in all)` : "");
  return new RangeError(`${argument}: no adapter ${describe(name)}${where === undefined ? "" : ` in ${where}`} (adapters: ${listed || "none"})`);
}

/** Checks `name` by the rule, then that it is one of `existing`. */
export function requireAdapter(name: unknown, existing: string[], argument = "adapterName"): string {
  const checked = checkAdapterName(name, argument);
  if (!existing.includes(checked)) throw noSuchAdapter(checked, existing, argument);
  return checked;
}
