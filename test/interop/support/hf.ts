/**
 * Runs transformers and PEFT themselves (test/interop/support/hf_interop.py) in the environment
 * that `node scripts/setup.js --for test` installs (scripts/lib/hf-reference.js). Tests that need
 * them skip, tagged {@link NO_HF}, where it is not installed.
 */
import { spawnSync } from "child_process";
import * as path from "path";
import { NO_HF, describeUnless } from "../../helpers/skip";

const reference = require(path.join(__dirname, "..", "..", "..", "scripts", "lib", "hf-reference.js")) as {
  hfPython(): string;
  hfReferenceReady(): boolean;
};

const SCRIPT = path.join(__dirname, "hf_interop.py");

/** `describe` when transformers and PEFT are installed, else `describe.skip` tagged {@link NO_HF}. */
export const describeHf = (title: string, body: () => void): void => describeUnless(reference.hfReferenceReady() ? null : NO_HF, title, body);

/** Sends `requests` to one Python process of transformers and PEFT and returns its answers, in order. */
export function hf<T = Record<string, unknown>>(requests: Record<string, unknown>[]): T[] {
  const r = spawnSync(reference.hfPython(), [SCRIPT], { input: JSON.stringify(requests), encoding: "utf8", maxBuffer: 256 << 20 });
  if (r.error) throw new Error(`transformers reference could not run: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`transformers reference failed (${r.status}):\n${r.stderr}`);
  return JSON.parse(r.stdout.trim().split("\n").pop() as string) as T[];
}

/** One request to transformers and PEFT; its answer. */
export const hfOne = <T = Record<string, unknown>>(request: Record<string, unknown>): T => hf<T>([request])[0];
