/**
 * Module-name regexes from adapter configs (target_modules / exclude_modules strings,
 * rank_pattern / alpha_pattern keys) run in linear time: crafted catastrophic patterns return at
 * once instead of blocking the event loop for minutes, ordinary patterns select what Python's
 * `re` selects (PEFT's rules), and what needs backtracking is refused with a ConfigError.
 */
import { spawnSync } from "child_process";
import * as path from "path";
import { ConfigError, lora } from "../../lib";
import { LlamaNames } from "../helpers/llama-names";
import { NO_PYTHON, itUnless } from "../helpers/skip";
import { DIST, itDist, runNode } from "./support/child";

const PYTHON = process.env.TORCH_LORA_PYTHON ?? "/usr/bin/python3";
const hasPython = spawnSync(PYTHON, ["-c", "import re"]).status === 0;
if (!hasPython) console.warn(`[regex reference] ${PYTHON} cannot run: the comparisons with Python's re are skipped`);
const itPython = (title: string, fn: jest.ProvidesCallback): void => itUnless(hasPython ? null : NO_PYTHON, title, fn);

/** For each pattern, the names Python selects: re.fullmatch (target/exclude) or PEFT's rank_pattern rule. */
function pythonSelects(patterns: string[], names: string[], rule: "fullmatch" | "suffix"): string[][] {
  const code = [
    "import json, re, sys",
    "inp = json.loads(sys.stdin.read())",
    "def sel(p, n):",
    "    return bool(re.fullmatch(p, n)) if inp['rule'] == 'fullmatch' else bool(re.match(rf'(.*\\.)?({p})$', n))",
    "print(json.dumps([[n for n in inp['names'] if sel(p, n)] for p in inp['patterns']]))",
  ].join("\n");
  const r = spawnSync(PYTHON, ["-c", code], { input: JSON.stringify({ patterns, names, rule }), encoding: "utf8" });
  if (r.status !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout) as string[][];
}

const model = () => new LlamaNames({ layers: 3 });
const NAMES = model()
  .namedModules()
  .filter(([p, m]) => p !== "" && (m instanceof lora.LoraLayer || ["Linear", "Embedding"].includes(m.constructor.name)))
  .map(([p]) => p);

const TARGET_PATTERNS = [
  String.raw`.*\.(q_proj|v_proj)`,
  String.raw`model\.layers\.[02]\.self_attn\.\w_proj`,
  String.raw`.*mlp.*`,
  String.raw`(?i).*Q_PROJ`, // inline flags: Python's syntax, which JS RegExp lacks
  String.raw`.*\.(?P<which>up|down)_proj`, // Python's named groups
  String.raw`^(?!.*mlp).*proj`, // the leading negative lookahead idiom
  String.raw`(?=.*layers\.1).*_proj`,
  String.raw`.*(?<!o)_proj`, // a lookbehind
  String.raw`model\.layers\.\d+\.self_attn\.(q|k)_proj|lm_head`,
  String.raw`(.*\.)?embed_tokens`,
];

describe("module-name patterns select what PEFT selects", () => {
  itPython("target_modules as a string: Python's re.fullmatch, on injection", () => {
    const want = pythonSelects(TARGET_PATTERNS, NAMES, "fullmatch");
    TARGET_PATTERNS.forEach((p, i) => {
      expect(want[i].length).toBeGreaterThan(0);
      const got = lora
        .injectAdapter(model(), { targetModules: p })
        .loraLayers()
        .map(([n]) => n);
      expect({ p, got }).toEqual({ p, got: want[i] });
    });
  });

  itPython("exclude_modules as a string removes exactly what re.fullmatch selects", () => {
    const want = pythonSelects(TARGET_PATTERNS, NAMES, "fullmatch");
    TARGET_PATTERNS.forEach((p, i) => {
      const remaining = NAMES.filter((n) => !want[i].includes(n));
      if (remaining.length === 0) return;
      const got = lora
        .injectAdapter(model(), { targetModules: NAMES, excludeModules: p })
        .loraLayers()
        .map(([n]) => n);
      expect({ p, got }).toEqual({ p, got: remaining });
    });
  });

  itPython("rank_pattern keys match a name or its dotted suffix (PEFT's get_pattern_key)", () => {
    const keys = [
      "q_proj",
      String.raw`layers\.1\.self_attn\.v_proj`,
      String.raw`\w+_proj`,
      "(up|down)_proj",
      "attn.q_proj",
      "embed",
      "lm_head|o_proj",
      String.raw`\d\.mlp\.up_proj`,
    ];
    const want = pythonSelects(keys, NAMES, "suffix");
    keys.forEach((k, i) => {
      const lm = lora.injectAdapter(model(), { targetModules: NAMES, r: 2, rankPattern: { [k]: 3 } });
      const got = lm
        .loraLayers()
        .filter(([, l]) => l.settings("default")!.r === 3)
        .map(([n]) => n);
      expect({ k, got }).toEqual({ k, got: want[i] });
    });
  });
});

describe("patterns that need backtracking, or are too big, are refused by name", () => {
  test.each([
    ["a backreference", String.raw`(q)\1_proj`, /not a supported regular expression.*backtracking/],
    ["a lookahead after the start", String.raw`.*(?!mlp)proj`, /not a supported regular expression.*lookaheads other than at the start/],
    ["a leading lookahead before a top-level |", String.raw`(?!.*mlp).*proj|lm_head`, /top-level "\|"/],
    ["an oversized program", "x{1000}".repeat(6), /regex instructions, more than the 5000 accepted/],
    ["a pattern longer than 4096 characters", "q".repeat(5000), /at most 4096 characters/],
    ["a syntax error", "(q_proj", /not a supported regular expression: missing closing \)/],
  ])("%s", (_what, pattern, message) => {
    expect(() => lora.injectAdapter(model(), { targetModules: pattern })).toThrow(ConfigError);
    expect(() => lora.injectAdapter(model(), { targetModules: pattern })).toThrow(message);
    expect(() => lora.injectAdapter(model(), { targetModules: ["q_proj"], rankPattern: { [pattern]: 2 } })).toThrow(/LoraConfig\.rankPattern key/);
    expect(() => lora.resolveLoraConfig({ targetModules: ["q_proj"], excludeModules: pattern })).toThrow(/LoraConfig\.excludeModules/);
  });
});

describe("crafted catastrophic patterns never block (each run in a child, so a hang is caught)", () => {
  interface Report {
    cases: number;
    accepted: number;
    refused: number;
    failures: unknown[];
    maxMs: number;
    slowest: unknown;
  }
  const run = (mode: string, runs: number, timeoutMs: number) =>
    runNode<Report>([path.join(__dirname, "support/regex-fuzz.js"), DIST, mode, "20261130", String(runs)], timeoutMs);

  // A backtracking engine took minutes on each of these against a 31-character module name.
  itDist(
    "8 crafted patterns × 7 places (target/exclude strings, rank/alpha keys, injected and loaded) finish within 10 s",
    () => {
      const r = run("crafted", 0, 10_000);
      expect({ status: r.status, signal: r.signal }).toEqual({ status: 0, signal: null });
      const s = r.result!;
      console.log(
        `crafted regexes: ${s.cases} cases, ${s.accepted} accepted, ${s.refused} refused; slowest ${s.maxMs.toFixed(0)} ms (${JSON.stringify(s.slowest)})`,
      );
      expect(s.failures).toEqual([]);
      expect(s.cases).toBe(56);
    },
    20_000,
  );

  itDist(
    "fuzz: 400 generated nested-quantifier patterns in every place finish within 60 s, each accepted or refused by a ConfigError",
    () => {
      const r = run("fuzz", 400, 60_000);
      expect({ status: r.status, signal: r.signal }).toEqual({ status: 0, signal: null });
      const s = r.result!;
      console.log(
        `regex fuzz: ${s.cases} cases, ${s.accepted} accepted, ${s.refused} refused; slowest ${s.maxMs.toFixed(0)} ms (${JSON.stringify(s.slowest)})`,
      );
      expect(s.failures).toEqual([]);
      expect(s.cases).toBe(400);
      // Both outcomes occur: the generator reaches matching, not only the syntax check.
      expect(s.accepted).toBeGreaterThan(0);
      expect(s.refused).toBeGreaterThan(0);
    },
    90_000,
  );
});
