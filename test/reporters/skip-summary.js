"use strict";
// A jest reporter, next to the default one: after the run it prints how many tests were skipped,
// grouped by the reason in their titles ("[skip: no GPU]", the convention of
// test/helpers/skip.ts), so a run that left comparisons out says so at the end.
// With CI=true, where every dependency is installed, a skip for any reason but a missing GPU
// fails the run (getLastError makes jest exit with 1), naming the tests.
const path = require("path");

const TAG = /\[skip: ([^\]]+)\]/;
const TAGS = new RegExp(TAG.source, "g");
/** NO_GPU of test/helpers/skip.ts: the one reason CI accepts. */
const NO_GPU = "no GPU";
/** NO_TORCH of test/helpers/skip.ts, and where to learn how to install PyTorch. */
const NO_TORCH = "no PyTorch to compare against";
const NO_TORCH_HINT = "`node scripts/setup.js --for test --plan` says how to install PyTorch";
const UNTAGGED = "no reason in the title";

/** Whether CI=true (or 1): the environment where every skip but NO_GPU is an error. */
function isCi(env = process.env) {
  return /^(true|1)$/i.test(env.CI ?? "");
}

/** The skipped tests of a run's results, grouped by reason: Map<reason, string[]> of "file › full name". */
function skippedByReason(results, rootDir) {
  const byReason = new Map();
  for (const file of results.testResults) {
    for (const t of file.testResults) {
      if (t.status !== "pending" && t.status !== "skipped") continue;
      const tag = [...t.ancestorTitles, t.title].map((title) => TAG.exec(title)).find(Boolean);
      const reason = tag ? tag[1] : UNTAGGED;
      if (!byReason.has(reason)) byReason.set(reason, []);
      const name = t.fullName.replace(TAGS, "").replace(/\s+/g, " ").trim();
      byReason.get(reason).push(`${path.relative(rootDir, file.testFilePath)} › ${name}`);
    }
  }
  return byReason;
}

/**
 * The summary line: "Skipped: 3 tests (2 no GPU; 1 no PyTorch to compare against)", or
 * "Skipped: none"; `filtered` when a name filter (-t) left tests out, which are not counted.
 */
function summaryLine(byReason, filtered = false) {
  // Most first; ties by name; the untagged last, whatever their number.
  const rank = ([reason, tests]) => [reason === UNTAGGED ? 1 : 0, -tests.length, reason];
  const groups = [...byReason].sort((a, b) => {
    const [x, y] = [rank(a), rank(b)];
    return x[0] - y[0] || x[1] - y[1] || x[2].localeCompare(y[2]);
  });
  const total = groups.reduce((n, [, tests]) => n + tests.length, 0);
  if (total === 0) return filtered ? "Skipped: none (not counting the tests -t left out)" : "Skipped: none (every test ran)";
  return `Skipped: ${total} test${total === 1 ? "" : "s"} (${groups.map(([reason, tests]) => `${tests.length} ${reason}`).join("; ")})`;
}

class SkipSummaryReporter {
  constructor(globalConfig, options = {}) {
    this.rootDir = globalConfig.rootDir;
    // A name filter (-t) leaves the tests it does not match skipped, with no reason: not a gap.
    this.filtered = Boolean(globalConfig.testNamePattern);
    this.ci = options.ci ?? isCi();
    this.error = undefined;
  }

  onRunComplete(_contexts, results) {
    const byReason = skippedByReason(results, this.rootDir);
    if (this.filtered) byReason.delete(UNTAGGED);
    let text = summaryLine(byReason, this.filtered);
    if (byReason.has(NO_TORCH)) text += `; ${NO_TORCH_HINT}`;
    const unexpected = this.ci ? [...byReason].filter(([reason]) => reason !== NO_GPU) : [];
    if (unexpected.length > 0) {
      const list = unexpected.flatMap(([reason, tests]) => tests.map((name) => `  [${reason}] ${name}`));
      const message = `CI=true: every dependency should be installed, but ${list.length} test${list.length === 1 ? " was" : "s were"} skipped for another reason than "${NO_GPU}":\n${list.join("\n")}`;
      this.error = new Error(message);
      text += `\n${message}`;
    }
    // jest's own summary is printed by the reporter it always adds last: print after it, as
    // the run's last words (stderr writes are synchronous, so they are not lost at exit).
    process.once("exit", () => process.stderr.write(`${text}\n`));
  }

  getLastError() {
    return this.error;
  }
}

module.exports = SkipSummaryReporter;
module.exports.skippedByReason = skippedByReason;
module.exports.summaryLine = summaryLine;
