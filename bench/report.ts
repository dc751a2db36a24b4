/** Prints the comparison table and writes bench-results/latest.json. */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { Timing } from "./types";

/** One row of the report: torch-lora's timing next to PyTorch's (null when not measured). */
export interface ReportRow {
  name: string;
  js: Timing;
  python: Timing | null;
}

const fmt = (us: number) => us.toFixed(2).padStart(8);

/** The table as text; ratio = torch-lora median / PyTorch median (below 1: faster than PyTorch). */
export function formatTable(rows: ReportRow[]): string {
  const head = `${"case".padEnd(22)} ${"torch-lora µs (min..max)".padEnd(30)} ${"PyTorch µs (min..max)".padEnd(30)} ratio`;
  const lines = rows.map((r) => {
    const js = `${fmt(r.js.medianUs)} (${r.js.minUs.toFixed(2)}..${r.js.maxUs.toFixed(2)})`;
    const py = r.python ? `${fmt(r.python.medianUs)} (${r.python.minUs.toFixed(2)}..${r.python.maxUs.toFixed(2)})` : "       — (no torch)";
    const ratio = r.python ? (r.js.medianUs / r.python.medianUs).toFixed(2) + "x" : "—";
    return `${r.name.padEnd(22)} ${js.padEnd(30)} ${py.padEnd(30)} ${ratio}`;
  });
  return [head, "-".repeat(head.length), ...lines].join("\n");
}

/** Writes the rows and the environment they were measured in; returns the file's path. */
export function writeResults(rows: ReportRow[], meta: Record<string, unknown>, dir = path.resolve(process.cwd(), "bench-results")): string {
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, "latest.json");
  const doc = {
    date: new Date().toISOString(),
    node: process.version,
    cpu: os.cpus()[0]?.model,
    cores: os.cpus().length,
    ...meta,
    results: rows.map((r) => ({ ...r, ratio: r.python ? r.js.medianUs / r.python.medianUs : null })),
  };
  fs.writeFileSync(file, JSON.stringify(doc, null, 2) + "\n");
  return file;
}
