/**
 * The independent safetensors validator (safetensors_oracle.py, written from the format's
 * specification, sharing no code with lib/io) and the comparison of its verdicts with what the
 * loader did. Needs only a plain python3: the interpreter that `TORCH_LORA_PYTHON` names, else
 * /usr/bin/python3.
 */
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";

const PYTHON = process.env.TORCH_LORA_PYTHON ?? "/usr/bin/python3";
const SCRIPT = path.join(__dirname, "safetensors_oracle.py");

/** Why the oracle cannot run here, or null when it can. */
export function oracleUnavailable(): string | null {
  const r = spawnSync(PYTHON, ["-c", "import base64, json"], { encoding: "utf8" });
  return r.status === 0 ? null : `${PYTHON} cannot run (${r.error?.message ?? r.stderr.trim()}): the independent safetensors validator is skipped`;
}

/** The oracle's judgement of one file. */
export type Verdict =
  { id: number; verdict: "valid"; tensors: Record<string, [string, number[], string]> } | { id: number; verdict: "invalid" | "unsupported"; why: string };

/** What the loader made of one file, as the fuzz child records it. */
export interface LoaderCase {
  id: number;
  b64: string;
  outcome: "loaded" | "formatError" | "other";
  tensors?: Record<string, [string, number[], string]>;
  message?: string;
}

/** Judges every case in one python3 process (cases: JSON lines with `id` and `b64`). */
export function judge(casesJsonl: string): Verdict[] {
  const r = spawnSync(PYTHON, [SCRIPT], { input: casesJsonl, encoding: "utf8", maxBuffer: 256 << 20, timeout: 120_000 });
  if (r.status !== 0) throw new Error(`safetensors oracle failed (${r.status ?? r.signal}): ${r.stderr}`);
  return r.stdout
    .trim()
    .split("\n")
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l) as Verdict);
}

/**
 * Each disagreement between the loader and the oracle, described: a file the oracle calls
 * valid must load with exactly its tensors (names, dtypes, shapes, bytes); one it calls invalid
 * or unsupported must be a FormatError.
 */
export function disagreements(cases: LoaderCase[], verdicts: Verdict[]): string[] {
  const byId = new Map(verdicts.map((v) => [v.id, v]));
  const out: string[] = [];
  for (const c of cases) {
    const v = byId.get(c.id);
    const where = `case ${c.id} (file bytes: ${c.b64})`;
    if (!v) out.push(`${where}: no verdict`);
    else if (v.verdict === "valid") {
      if (c.outcome !== "loaded") out.push(`${where}: valid by the format, but the loader said ${c.message}`);
      else if (JSON.stringify(sorted(c.tensors!)) !== JSON.stringify(sorted(v.tensors))) {
        out.push(`${where}: loaded ${JSON.stringify(sorted(c.tensors!))}, the format says ${JSON.stringify(sorted(v.tensors))}`);
      }
    } else if (c.outcome !== "formatError")
      out.push(`${where}: ${v.verdict} (${v.why}), but the loader ${c.outcome === "loaded" ? "loaded it" : `threw ${c.message}`}`);
  }
  return out;
}

function sorted<T>(record: Record<string, T>): [string, T][] {
  return Object.entries(record).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/** Reads the fuzz child's record file. */
export function readCases(file: string): LoaderCase[] {
  return fs
    .readFileSync(file, "utf8")
    .split("\n")
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l) as LoaderCase);
}
