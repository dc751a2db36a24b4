/** Runs the built command line (`node dist/lib/cli.js`) in a child process, building it first when lib/ is newer. */
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";

const root = path.resolve(__dirname, "../..");
export const CLI = path.join(root, "dist/lib/cli.js");

function newest(dir: string): number {
  let t = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newest(p) : e.name.endsWith(".ts") ? fs.statSync(p).mtimeMs : 0);
  }
  return t;
}

/** Compiles TypeScript to dist/ when dist/lib/cli.js is missing or older than a source file. */
export function ensureBuilt(): void {
  if (fs.existsSync(CLI) && fs.statSync(CLI).mtimeMs >= newest(path.join(root, "lib"))) return;
  const r = spawnSync(process.execPath, [require.resolve("typescript/bin/tsc"), "-p", path.join(root, "tsconfig.build.json")], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`building dist/ failed:\n${r.stdout}${r.stderr}`);
}

/** The exit code and output of `torch-lora ...args`. */
export function runCli(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8", env: { ...process.env, TORCH_LORA_DEBUG: "" } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}
