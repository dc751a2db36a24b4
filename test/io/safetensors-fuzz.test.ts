import * as path from "path";
import { spawnSync } from "child_process";

const ROOT = path.resolve(__dirname, "../..");
const RUNS = 4000;
// Fixed by default so a failure reproduces; set TL_FUZZ_SEED to explore other mutations.
const SEED = Number(process.env.TL_FUZZ_SEED ?? 20240611);

test(`fuzz: ${RUNS} mutated or truncated files each load or fail with a FormatError, never crash`, () => {
  // A child process, so that a native crash (abort, segfault) shows up as a failed exit instead of killing jest.
  const started = Date.now();
  const r = spawnSync(
    process.execPath,
    ["-r", path.join(__dirname, "support/register-ts.js"), path.join(__dirname, "support/fuzz-child.ts"), String(RUNS), String(SEED)],
    { cwd: ROOT, encoding: "utf8", maxBuffer: 16 << 20 },
  );
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  const lastLine = r.stdout.trim().split("\n").pop() ?? "";
  console.log(`safetensors fuzz: ${lastLine} in ${seconds} s`);
  expect({ status: r.status, signal: r.signal, stderr: r.stderr.slice(0, 2000) }).toEqual({ status: 0, signal: null, stderr: "" });
  const summary = JSON.parse(lastLine);
  expect(summary.runs).toBe(RUNS);
  expect(summary.failureCount).toBe(0);
  // Both outcomes occur, so the mutations reach past the first checks and the loader is exercised.
  expect(summary.loaded).toBeGreaterThan(0);
  expect(summary.formatErrors).toBeGreaterThan(0);
  expect(summary.loaded + summary.formatErrors).toBe(RUNS);
});
