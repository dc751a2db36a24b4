/**
 * The module-name pattern matchers (lib/lora/module-patterns.ts) called directly, in this process,
 * with selections written out by hand from Python's `re.fullmatch` (target_modules /
 * exclude_modules strings) and PEFT's `re.match(rf"(.*\.)?({key})$", name)` (rank_pattern /
 * alpha_pattern keys). test/reliability/regex.test.ts compares realistic patterns with Python
 * itself; here the cases aim at the pieces of the translation: the leading lookaheads (taken
 * apart with a bracket scanner that must skip escapes, character classes and nested groups), the
 * refusal of a top-level "|" after them, the limits, the messages, and the matcher cache.
 */
import { ConfigError } from "../../lib/errors";
import { MAX_PATTERN_LENGTH, MAX_PATTERN_PROGRAM, fullNameMatcher, suffixKeyMatcher } from "../../lib/lora/module-patterns";
import { messageOf } from "../helpers/errors";

const FIELD = "LoraConfig.targetModules";

/** The names of `names` that `pattern` selects as a whole (re.fullmatch). */
const fullSelects = (pattern: string, names: string[]) => names.filter(fullNameMatcher(pattern, FIELD));

/** The message of the ConfigError that `fn` throws. */
const message = (fn: () => unknown): string => messageOf(fn, ConfigError);

/** What the refusal of a pattern that needs a backtracking matcher adds to the parser's reason. */
const BACKTRACKING_HINT =
  " (lookaheads other than at the start, capturing lookbehinds and backreferences need a backtracking matcher, which a crafted pattern can stall for minutes; use exclude_modules or a list of names instead)";

describe("fullNameMatcher selects the names re.fullmatch selects", () => {
  // [what, pattern, names tried, the names Python's re.fullmatch(pattern, name) accepts]
  test.each<[string, string, string[], string[]]>([
    ["a plain name matches the whole name only", "q_proj", ["q_proj", "model.q_proj", "q_proj2"], ["q_proj"]],
    ["a leading ^ without lookahead changes nothing", "^q_proj", ["q_proj", "model.q_proj", "q_proj2"], ["q_proj"]],
    ["a top-level | without lookahead is an ordinary alternation", "a|b", ["a", "b", "ab"], ["a", "b"]],
    // Leading lookaheads: each is tested at position 0 of the name, the rest must match all of it.
    [
      "^(?!X) excludes the names X matches from the start",
      String.raw`^(?!.*mlp).*proj`,
      ["layers.0.mlp.up_proj", "layers.0.self_attn.q_proj", "lm_head"],
      ["layers.0.self_attn.q_proj"],
    ],
    ["(?=X) requires X from the start", String.raw`(?=.*layers\.1).*_proj`, ["layers.1.q_proj", "layers.0.q_proj", "layers.1.norm"], ["layers.1.q_proj"]],
    [
      "two lookaheads must both hold",
      String.raw`(?!.*mlp)(?=.*layers\.1).*proj`,
      ["layers.1.mlp.up_proj", "layers.1.self_attn.q_proj", "layers.0.self_attn.q_proj"],
      ["layers.1.self_attn.q_proj"],
    ],
    [
      "two lookaheads after ^, positive first",
      String.raw`^(?=.*layers\.1)(?!.*mlp).*proj`,
      ["layers.1.mlp.up_proj", "layers.1.self_attn.q_proj", "layers.0.self_attn.q_proj"],
      ["layers.1.self_attn.q_proj"],
    ],
    ["a lookahead looks at the start only, not anywhere in the name", "(?!mlp).*", ["x.mlp", "mlp.x"], ["x.mlp"]],
    ["an alternation inside a lookahead stays inside it", "(?!a|b).*", ["xb", "bx", "ax", "x"], ["xb", "x"]],
    ["a lookahead consumes nothing: the rest matches from the start", "(?=(q|k)_)(.*)", ["q_proj", "k_proj", "v_proj"], ["q_proj", "k_proj"]],
    // The end of a lookahead: escapes, character classes and nested groups are skipped.
    ["an escaped ) inside a lookahead", String.raw`(?!.*\)x).*`, ["a)x", "b", "a)y"], ["b", "a)y"]],
    ["a nested group inside a lookahead", "(?!(a|b)c).*", ["ac", "bc", "ab", "c"], ["ab", "c"]],
    ["a ) inside a class inside a lookahead", "(?![)]).*", [")a", "a", ""], ["a", ""]],
    ["] first in a class is literal", "(?![])]).*", [")x", "x", "]", ""], ["x", ""]],
    ["] first after ^ in a class is literal", "(?![^])]).*", [")a", "]", "a", ""], [")a", "]", ""]],
    ["a class of ] alone", "(?![]]).*", ["]x", "x"], ["x"]],
    ["a ) after the first character of a class", "(?![a)]).*", ["a", ")", "b", ""], ["b", ""]],
    ["an escaped ] inside a class", String.raw`(?![\])]).*`, [")x", "]x", "x"], ["x"]],
    // A | in a group, escaped or in a class is no top-level alternation: accepted after a lookahead.
    ["an escaped | after a lookahead", String.raw`(?!x).*\|y`, ["a|y", "x|y", "ay"], ["a|y"]],
    ["a | in a class after a lookahead", "(?!x)a[|]b", ["a|b", "ab"], ["a|b"]],
    ["a | after the first character of a class", "(?!x)[a|]b", ["ab", "|b", "xb"], ["ab", "|b"]],
    ["a | in a group after a lookahead", "(?!x)(a|b)", ["a", "b", "x"], ["a", "b"]],
    ["a ) in a class before a group with |", "(?!x)[)](a|b)", [")a", ")b", "a"], [")a", ")b"]],
  ])("%s: %s", (_what, pattern, names, selected) => {
    expect(fullSelects(pattern, names)).toEqual(selected);
  });

  test("a pattern of the largest accepted program matches what it should", () => {
    // x{n} is n instructions of one character each, plus RE2's leading Fail and final Match.
    const exact = "x{1000}".repeat(4) + "x{998}";
    expect(fullSelects(exact, ["x".repeat(4998), "x".repeat(4997), "x".repeat(4999)])).toEqual(["x".repeat(4998)]);
  });

  test("a pattern of the longest accepted length matches what it should", () => {
    const longest = "q".repeat(MAX_PATTERN_LENGTH);
    expect(MAX_PATTERN_LENGTH).toBe(4096);
    expect(fullSelects(longest, ["q".repeat(4096), "q".repeat(4095)])).toEqual(["q".repeat(4096)]);
  });
});

describe("fullNameMatcher refuses, by name, what it cannot match as Python does in linear time", () => {
  // Python would bind the lookahead to the first branch only; refused rather than guessed.
  test.each([
    ["after a group", "(?!x)(a)|b"],
    ["after a ( in a class", "(?!x)[(]a|b"],
    ["after a class", "(?!x)[a]|b"],
    ["right after the lookahead's text", "(?!x)a|b"],
    ["after ^ and two lookaheads", "^(?!x)(?=a)a|b"],
  ])("a top-level | after a leading lookahead, %s", (_what, pattern) => {
    expect(message(() => fullNameMatcher(pattern, FIELD))).toBe(
      `${FIELD}: the string ${JSON.stringify(pattern)}: a leading lookahead followed by a top-level "|" is not supported; put the alternatives in a group`,
    );
  });

  test("an unclosed leading lookahead is refused whole, with the hint (not matched as a shorter lookahead)", () => {
    // RE2 reads the pattern from the left and stops at the lookahead it cannot run.
    for (const pattern of ["(?!abc", "(?![a"]) {
      expect(message(() => fullNameMatcher(pattern, FIELD))).toBe(
        `${FIELD}: the string ${JSON.stringify(pattern)} is not a supported regular expression: invalid or unsupported Perl syntax: \`(?!\`${BACKTRACKING_HINT}`,
      );
    }
  });

  test("a syntax error gets the parser's reason and no hint", () => {
    expect(message(() => fullNameMatcher("(q_proj", FIELD))).toBe(
      `${FIELD}: the string "(q_proj" is not a supported regular expression: missing closing ): \`(q_proj\``,
    );
  });

  test("a lookahead after the start and a backreference get the hint", () => {
    expect(message(() => fullNameMatcher(".*(?!mlp)proj", FIELD))).toBe(
      `${FIELD}: the string ".*(?!mlp)proj" is not a supported regular expression: invalid or unsupported Perl syntax: \`(?!\`${BACKTRACKING_HINT}`,
    );
    expect(message(() => fullNameMatcher(String.raw`(q)\1_proj`, FIELD))).toBe(
      `${FIELD}: the string "(q)\\\\1_proj" is not a supported regular expression: invalid escape sequence: \`\\1\`${BACKTRACKING_HINT}`,
    );
  });

  test("a capturing lookbehind gets the hint; a plain one is supported", () => {
    for (const pattern of ["(?<=(a))b", "(?<!(a))b"]) {
      expect(message(() => fullNameMatcher(pattern, FIELD))).toBe(
        `${FIELD}: the string ${JSON.stringify(pattern)} is not a supported regular expression: invalid capture in lookbehind: \`${pattern}\`${BACKTRACKING_HINT}`,
      );
    }
    expect(() => fullNameMatcher("(?<=a)b", FIELD)).not.toThrow();
  });

  test("one instruction more than the largest program is refused, naming its size", () => {
    expect(MAX_PATTERN_PROGRAM).toBe(5000);
    const over = "x{1000}".repeat(4) + "x{999}";
    expect(message(() => fullNameMatcher(over, FIELD))).toBe(
      `${FIELD}: the string ${JSON.stringify(over)} compiles to 5001 regex instructions, more than the 5000 accepted (large repeat counts such as {1000} multiply the size)`,
    );
  });

  test("one character more than the longest pattern is refused, naming its length", () => {
    expect(message(() => fullNameMatcher("q".repeat(4097), FIELD))).toBe(
      `${FIELD}: expected a regular expression of at most 4096 characters, got one of 4097; list the module names instead`,
    );
  });

  test("a pattern that is not a string is refused, naming what was given", () => {
    expect(message(() => fullNameMatcher(3 as unknown as string, FIELD))).toBe(`${FIELD}: expected a regular expression string, got 3`);
    expect(message(() => suffixKeyMatcher(null as unknown as string, "LoraConfig.rankPattern key"))).toBe(
      "LoraConfig.rankPattern key: expected a regular expression string, got null",
    );
  });
});

describe("suffixKeyMatcher selects a name or its dotted suffix, as PEFT's rank_pattern keys", () => {
  // [key, names tried, the names re.match(rf"(.*\.)?({key})$", name) accepts]
  test.each<[string, string[], string[]]>([
    ["q_proj", ["q_proj", "model.layers.0.self_attn.q_proj", "model.xq_proj", "q_proj.lora"], ["q_proj", "model.layers.0.self_attn.q_proj"]],
    ["lm_head|o_proj", ["lm_head", "x.o_proj", "x.lm_head", "o_proj.x", "xo_proj"], ["lm_head", "x.o_proj", "x.lm_head"]],
    [String.raw`layers\.1\.mlp`, ["model.layers.1.mlp", "model.layers.11.mlp", "layers.1.mlp"], ["model.layers.1.mlp", "layers.1.mlp"]],
  ])("%s", (key, names, selected) => {
    expect(names.filter(suffixKeyMatcher(key, "LoraConfig.rankPattern key"))).toEqual(selected);
  });

  test("a key that is no pattern on its own is refused, even where wrapping would balance it", () => {
    // Wrapped as (?:.*\.)?(?:a)|(b) it would compile; Python's re.compile("a)|(b") refuses the key.
    expect(message(() => suffixKeyMatcher("a)|(b", "LoraConfig.rankPattern key"))).toBe(
      'LoraConfig.rankPattern key: the string "a)|(b" is not a supported regular expression: unexpected ): `a)|(b`',
    );
  });
});

describe("the matcher cache", () => {
  test("a pattern is compiled once: the same matcher comes back, also after other patterns", () => {
    const first = fullNameMatcher("cache_a", FIELD);
    fullNameMatcher("cache_b", FIELD);
    expect(fullNameMatcher("cache_a", FIELD)).toBe(first);
    const key = suffixKeyMatcher("cache_a", "pattern key");
    suffixKeyMatcher("cache_b", "pattern key");
    expect(suffixKeyMatcher("cache_a", "pattern key")).toBe(key);
  });

  test("the same text as a whole-name pattern and as a suffix key keeps both meanings, in either order", () => {
    expect(fullNameMatcher("order_one", FIELD)("m.order_one")).toBe(false);
    expect(suffixKeyMatcher("order_one", "pattern key")("m.order_one")).toBe(true);
    expect(suffixKeyMatcher("order_two", "pattern key")("m.order_two")).toBe(true);
    expect(fullNameMatcher("order_two", FIELD)("m.order_two")).toBe(false);
  });

  test("the cache is bounded: after 5000 other patterns the first is compiled again, and still matches", () => {
    const first = fullNameMatcher("bounded_first", FIELD);
    for (let i = 0; i < 5000; i++) fullNameMatcher(`bounded_${i}`, FIELD);
    const again = fullNameMatcher("bounded_first", FIELD);
    expect(again).not.toBe(first);
    expect(["bounded_first", "x.bounded_first"].filter(again)).toEqual(["bounded_first"]);
  });

  test("a refused pattern is refused every time (nothing is cached for it)", () => {
    for (let i = 0; i < 2; i++) expect(() => fullNameMatcher("(q_proj", FIELD)).toThrow(ConfigError);
  });
});
