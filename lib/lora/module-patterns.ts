/**
 * Module-name patterns from adapter configs — `target_modules` or `exclude_modules` given as a
 * string, and the keys of `rank_pattern` / `alpha_pattern` — matched in time linear in the
 * name's length.
 *
 * Why not `RegExp`: these patterns often come from adapter files downloaded from elsewhere, and
 * V8's backtracking engine lets a crafted pattern run for an exponential time: `(.*.*)*x` against
 * a 31-character module name blocked the event loop for minutes. We use re2js, a pure JavaScript
 * port of RE2: linear-time matching, no native addon to build or prebuild, nothing downloaded at
 * install, and a syntax close to Python's `re`, which PEFT uses (inline flags such as `(?i)`,
 * `(?P<name>...)` groups, `\d`, `\w`, `\b`). What RE2 cannot do in linear time is refused with a
 * ConfigError: backreferences, lookbehinds that capture, and lookaheads except at the start of a
 * pattern (the `^(?!.*vision).*proj` idiom, which is matched as two linear-time patterns).
 * Program size is bounded too, since the cost of a match grows with it.
 */
import { RE2JS } from "re2js";
import { ConfigError, describe } from "../errors";

/** Longest pattern accepted, in characters: real ones are a few hundred at most. */
export const MAX_PATTERN_LENGTH = 4096;
/** Largest compiled program accepted (RE2 instructions): `x{1000}` alone is 1000 of them. */
export const MAX_PATTERN_PROGRAM = 5000;

/** Whether a whole name is selected. */
export type NameMatcher = (name: string) => boolean;

/** A leading `(?!X)` or `(?=X)`: X must (not) match at the start of the name. */
interface LeadingLookahead {
  negative: boolean;
  prefix: RE2JS;
}

const cache = new Map<string, NameMatcher>();
const CACHE_LIMIT = 512;

function remember(key: string, make: () => NameMatcher): NameMatcher {
  let m = cache.get(key);
  if (m) return m;
  m = make();
  if (cache.size >= CACHE_LIMIT) cache.clear();
  cache.set(key, m);
  return m;
}

/** Index just past the group that opens at `open`, skipping escapes and character classes; -1 when unclosed. */
function groupEnd(source: string, open: number): number {
  let depth = 0;
  for (let i = open; i < source.length; i++) {
    const c = source[i];
    if (c === "\\") i++;
    else if (c === "[") i = classEnd(source, i) - 1;
    else if (c === "(") depth++;
    else if (c === ")" && --depth === 0) return i + 1;
  }
  return -1;
}

/** Index just past the character class that opens at `open` (`]` first in a class is literal). */
function classEnd(source: string, open: number): number {
  let i = open + 1;
  if (source[i] === "^") i++;
  if (source[i] === "]") i++;
  for (; i < source.length; i++) {
    if (source[i] === "\\") i++;
    else if (source[i] === "]") return i + 1;
  }
  return source.length;
}

/** Whether `source` has a `|` outside every group (a leading lookahead would bind to its first branch only). */
function hasTopLevelAlternation(source: string): boolean {
  let depth = 0;
  for (let i = 0; i < source.length; i++) {
    const c = source[i];
    if (c === "\\") i++;
    else if (c === "[") i = classEnd(source, i) - 1;
    else if (c === "(") depth++;
    else if (c === ")") depth--;
    else if (c === "|" && depth === 0) return true;
  }
  return false;
}

function compile(source: string, field: string, what: string): RE2JS {
  let re: RE2JS;
  try {
    re = RE2JS.compile(source, RE2JS.LOOKBEHINDS);
  } catch (err) {
    const why = (err as Error).message.replace(/^error parsing regexp: /, "");
    const hint = /\(\?<?[!=]|\\[1-9]/.test(source)
      ? " (lookaheads other than at the start, capturing lookbehinds and backreferences need a backtracking matcher, which a crafted pattern can stall for minutes; use exclude_modules or a list of names instead)"
      : "";
    throw new ConfigError(`${field}: ${describe(what)} is not a supported regular expression: ${why}${hint}`);
  }
  const size = re.re2().numberOfInstructions() as number;
  if (size > MAX_PATTERN_PROGRAM) {
    throw new ConfigError(
      `${field}: ${describe(what)} compiles to ${size} regex instructions, more than the ${MAX_PATTERN_PROGRAM} accepted (large repeat counts such as {1000} multiply the size)`,
    );
  }
  return re;
}

function checkLength(source: unknown, field: string): string {
  if (typeof source !== "string") throw new ConfigError(`${field}: expected a regular expression string, got ${describe(source)}`);
  if (source.length > MAX_PATTERN_LENGTH) {
    throw new ConfigError(
      `${field}: expected a regular expression of at most ${MAX_PATTERN_LENGTH} characters, got one of ${source.length}; list the module names instead`,
    );
  }
  return source;
}

/**
 * A matcher for names the whole of which `pattern` matches, as Python's `re.fullmatch` (PEFT's
 * rule for a string `target_modules` / `exclude_modules`). Throws a ConfigError naming `field`
 * for a pattern that is invalid, too large, or needs backtracking.
 */
export function fullNameMatcher(pattern: string, field: string): NameMatcher {
  const source = checkLength(pattern, field);
  return remember(`full\0${source}`, () => {
    // Leading lookaheads, each tested at position 0, then the rest as a full match.
    const looks: LeadingLookahead[] = [];
    let rest = source.startsWith("^") ? source.slice(1) : source;
    while (rest.startsWith("(?!") || rest.startsWith("(?=")) {
      const end = groupEnd(rest, 0);
      if (end < 0) break;
      looks.push({ negative: rest[2] === "!", prefix: compile(`^(?:${rest.slice(3, end - 1)})`, field, pattern) });
      rest = rest.slice(end);
    }
    if (looks.length > 0 && hasTopLevelAlternation(rest)) {
      throw new ConfigError(
        `${field}: ${describe(pattern)}: a leading lookahead followed by a top-level "|" is not supported; put the alternatives in a group`,
      );
    }
    const whole = compile(looks.length ? rest : source, field, pattern);
    return (name) => looks.every((l) => l.prefix.test(name) !== l.negative) && whole.testExact(name);
  });
}

/**
 * A matcher for PEFT's `rank_pattern` / `alpha_pattern` keys: the key matches a name when the
 * name, or a part of it after a `.`, matches the key as a whole (Python's
 * `re.match(rf"(.*\.)?({key})$", name)`).
 */
export function suffixKeyMatcher(key: string, field: string): NameMatcher {
  const source = checkLength(key, field);
  return remember(`suffix\0${source}`, () => {
    // The key alone must be a well-formed pattern: wrapped, a stray ")" could close our group.
    compile(source, field, key);
    const re = compile(`(?:.*\\.)?(?:${source})`, field, key);
    return (name) => re.testExact(name);
  });
}
