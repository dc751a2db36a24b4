// Child process of regex.test.ts: module-name patterns built to make a backtracking engine take
// exponential time (nested and overlapping quantifiers that fail at the last character), put
// where adapter configs put regexes: target_modules and exclude_modules as strings, rank_pattern
// and alpha_pattern keys, through injectAdapter and through loadAdapter of a folder on disk.
// Every call must finish (the parent's timeout catches a hang) and either succeed or throw a
// ConfigError (or, loading, a FormatError: the pattern selects modules the file lacks). Prints one JSON line: {cases, accepted, refused, failures, maxMs, slowest}.
// Arguments: <dist index.js> <mode: crafted | fuzz> <seed> <runs>
"use strict";
const fs = require("fs");
const os = require("os");
const path = require("path");
const fc = require("fast-check");
const t = require(process.argv[2]);
const mode = process.argv[3];
const seed = Number(process.argv[4]);
const runs = Number(process.argv[5]);

class Attention extends t.nn.Module {
  constructor() {
    super();
    for (const n of ["q_proj", "k_proj", "v_proj", "o_proj"]) this[n] = new t.nn.Linear(4, 4, { bias: false });
  }
}
class Layer extends t.nn.Module {
  constructor() {
    super();
    this.self_attn = new Attention();
  }
}
class Body extends t.nn.Module {
  constructor() {
    super();
    this.layers = new t.nn.ModuleList([new Layer(), new Layer()]);
  }
}
// Module paths as long as a real checkpoint's: "model.layers.0.self_attn.q_proj" is 31 characters.
class Net extends t.nn.Module {
  constructor() {
    super();
    this.model = new Body();
    this.lm_head = new t.nn.Linear(4, 6, { bias: false });
  }
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tl-regex-"));
const base = { peft_type: "LORA", r: 2, lora_alpha: 4, lora_dropout: 0, bias: "none", fan_in_fan_out: false, use_rslora: false, init_lora_weights: true };

/** The places a pattern goes, each a call that builds an adapter from it. */
const PLACES = {
  targetString: (p) => t.lora.injectAdapter(new Net(), { targetModules: p }),
  excludeString: (p) => t.lora.injectAdapter(new Net(), { targetModules: ["q_proj"], excludeModules: p }),
  rankKey: (p) => t.lora.injectAdapter(new Net(), { targetModules: ["q_proj"], rankPattern: { [p]: 4 } }),
  alphaKey: (p) => t.lora.injectAdapter(new Net(), { targetModules: ["q_proj"], alphaPattern: { [p]: 16 } }),
  loadTarget: (p) => loadWith({ target_modules: p }),
  loadExclude: (p) => loadWith({ target_modules: ["q_proj"], exclude_modules: p }),
  loadRankKey: (p) => loadWith({ target_modules: ["q_proj"], rank_pattern: { [p]: 2 } }),
};

/** Writes an adapter folder (config + zero factors for the q_proj layers) and loads it into a fresh model. */
function loadWith(fields) {
  const d = fs.mkdtempSync(path.join(dir, "a-"));
  fs.writeFileSync(path.join(d, "adapter_config.json"), JSON.stringify({ ...base, ...fields }));
  const tensors = {};
  for (const i of [0, 1]) {
    tensors[`base_model.model.model.layers.${i}.self_attn.q_proj.lora_A.weight`] = t.zeros([2, 4]);
    tensors[`base_model.model.model.layers.${i}.self_attn.q_proj.lora_B.weight`] = t.zeros([4, 2]);
  }
  t.io.saveSafetensorsSync(path.join(d, "adapter_model.safetensors"), tensors);
  return t.lora.loadAdapter(new Net(), d);
}

const report = { cases: 0, accepted: 0, refused: 0, failures: [], maxMs: 0, slowest: null };
function attempt(place, pattern) {
  report.cases++;
  const start = process.hrtime.bigint();
  try {
    PLACES[place](pattern);
    report.accepted++;
  } catch (e) {
    // A pattern that matches nothing, or that the matcher refuses, is a ConfigError; one that
    // selects more modules than the adapter file holds is a FormatError naming the missing keys.
    if (e instanceof t.ConfigError || (e instanceof t.FormatError && /does not fit the model/.test(e.message))) report.refused++;
    else report.failures.push({ place, pattern, error: `${e && e.name}: ${e && e.message}`.slice(0, 300) });
  }
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  if (ms > report.maxMs) {
    report.maxMs = ms;
    report.slowest = { place, pattern };
  }
}

// Patterns that took seconds to minutes on a backtracking engine against the names above.
const CRAFTED = ["(.*.*)*x", "(.*)*x", "(.|.)*x", "(\\w|\\.)*x", "([a-z_.0-9]+)*x", "((.*)*)*$x", "(.*\\.?)*(.*)*!", "(?:(?:\\w+)+\\.?)+X"];

if (mode === "crafted") {
  for (const place of Object.keys(PLACES)) for (const p of CRAFTED) attempt(place, p);
} else {
  // Nested quantifiers over overlapping atoms, closed by a character no module name ends with.
  const atom = fc.constantFrom(".", "\\w", "[a-z_.0-9]", "[^x]", "\\.", "_", "proj", "q_proj", "\\d", "(?:.*)", "a|.", ".?");
  const quant = fc.constantFrom("*", "+", "?", "{0,9}", "{1,}", "*?", "");
  const node = fc.letrec((tie) => ({
    leaf: fc.tuple(atom, quant).map(([a, q]) => (a.includes("|") ? `(?:${a})${q}` : `${a}${q}`)),
    group: fc
      .tuple(fc.array(tie("expr"), { minLength: 1, maxLength: 3 }), fc.constantFrom("", "|"), fc.constantFrom("*", "+", "{2,}", "?"), fc.boolean())
      .map(([parts, sep, q, capture]) => `(${capture ? "" : "?:"}${parts.join(sep)})${q}`),
    expr: fc.oneof({ depthSize: "small", maxDepth: 4 }, tie("leaf"), tie("group")),
  }));
  const pattern = fc.tuple(node.expr, node.expr, fc.constantFrom("x", "!", "\\.z", "$X", "")).map(([a, b, end]) => `${a}${b}${end}`);
  const place = fc.constantFrom(...Object.keys(PLACES));
  fc.sample(fc.tuple(place, pattern), { seed, numRuns: runs }).forEach(([pl, p]) => attempt(pl, p));
}
fs.rmSync(dir, { recursive: true, force: true });
console.log(JSON.stringify(report));
