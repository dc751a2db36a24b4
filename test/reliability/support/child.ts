/** Runs a plain `node` script against the built package (dist/) and parses its last output line. */
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { NOT_BUILT, itUnless } from "../../helpers/skip";

export const ROOT = path.resolve(__dirname, "../../..");
/** The built entry point; tests that need it skip with a note when it is missing. */
export const DIST = path.join(ROOT, "dist/lib/index.js");
export const hasDist = fs.existsSync(DIST);

/** `it` when dist/ is built, else `it.skip` with a note (build with `node scripts/setup.js`). */
export const itDist = (name: string, fn: () => Promise<void> | void, timeout?: number): void => {
  if (!hasDist) console.warn(`skipped "${name}": build dist/ first (node scripts/setup.js)`);
  itUnless(hasDist ? null : NOT_BUILT, name, fn as () => Promise<void>, timeout);
};

/** Exit status, signal, stderr and the JSON printed on the last stdout line of `node args...`. */
export function runNode<T>(
  args: string[],
  timeoutMs = 120_000,
): { status: number | null; signal: NodeJS.Signals | null; stderr: string; result: T | null; stdout: string } {
  const r = spawnSync(process.execPath, args, { cwd: ROOT, encoding: "utf8", maxBuffer: 64 << 20, timeout: timeoutMs });
  const last = r.stdout.trim().split("\n").pop() ?? "";
  let result: T | null = null;
  try {
    result = JSON.parse(last) as T;
  } catch {
    result = null;
  }
  return { status: r.status, signal: r.signal, stderr: r.stderr, result, stdout: r.stdout };
}
