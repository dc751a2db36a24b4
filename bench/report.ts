/** Prints the comparison table and writes bench-results/latest.json plus a dated copy. */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { Timing } from "./types";

/** One row of the report: torch-lora's timing next to PyTorch's and the native floor's (null when not measured). */
export interface ReportRow {
  name: string;
  group: string;
  js: Timing;
  python: Timing | null;
  floor: Timing | null;
  itemsPerCall?: number;
  /** Garbage-collection time per torch-lora call, in µs (over warm-up and timed batches). */
  gcUs?: number;
}

const us = (t: Timing | null) => (t ? `${fmtUs(t.medianUs)} (${fmtUs(t.minUs)}..${fmtUs(t.maxUs)})` : "—");
const ratio = (a: Timing, b: Timing | null) => (b ? a.medianUs / b.medianUs : null);
const fmtRatio = (r: number | null) => (r === null ? "—" : `${r.toFixed(2)}`);

/** Three significant digits, without exponent notation. */
function fmtUs(v: number): string {
  if (v >= 100) return v.toFixed(0);
  if (v >= 10) return v.toFixed(1);
  return v.toFixed(2);
}

/**
 * The table as Markdown: median µs per call (min..max over the timed batches), and the
 * ratios torch-lora / PEFT-style reference and torch-lora / native floor (below 1: faster).
 */
export function formatTable(rows: ReportRow[]): string {
  const head = "| case | torch-lora µs | PEFT-style PyTorch µs | native floor µs | ÷ PyTorch | ÷ floor |";
  const lines = [head, "|---|---:|---:|---:|---:|---:|"];
  let group = "";
  for (const r of rows) {
    if (r.group !== group) {
      group = r.group;
      lines.push(`| **${group}** | | | | | |`);
    }
    let name = r.name;
    if (r.itemsPerCall) {
      const tps = (t: Timing | null) => (t ? `${Math.round((r.itemsPerCall! * 1e6) / t.medianUs).toLocaleString("en-US")}` : "—");
      name += ` (tokens/s: ${tps(r.js)} vs ${tps(r.python)})`;
    }
    // Collection time per call, for the rows of whole model steps (those counting tokens).
    if (r.gcUs !== undefined && r.itemsPerCall) name += ` (GC ${fmtUs(r.gcUs)} µs/call, ${((100 * r.gcUs) / r.js.medianUs).toFixed(1)}%)`;
    lines.push(`| ${name} | ${us(r.js)} | ${us(r.python)} | ${us(r.floor)} | ${fmtRatio(ratio(r.js, r.python))} | ${fmtRatio(ratio(r.js, r.floor))} |`);
  }
  return lines.join("\n");
}

/** The machine the figures come from, as one line. */
export function machineLine(meta: { libtorch: string; torch: string | null }): string {
  const cpu = os.cpus()[0]?.model ?? "unknown CPU";
  return `${os.cpus().length} cores, ${cpu}; libtorch ${meta.libtorch}; Node ${process.version}; PyTorch ${meta.torch ?? "absent"}`;
}

/** Writes the rows and the environment they were measured in to latest.json and a dated copy; returns both paths. */
export function writeResults(rows: ReportRow[], meta: Record<string, unknown>, dir = path.resolve(process.cwd(), "bench-results")): string[] {
  fs.mkdirSync(dir, { recursive: true });
  const date = new Date();
  const doc = {
    date: date.toISOString(),
    node: process.version,
    cpu: os.cpus()[0]?.model,
    cores: os.cpus().length,
    ...meta,
    results: rows.map((r) => ({ ...r, ratioPython: ratio(r.js, r.python), ratioFloor: ratio(r.js, r.floor) })),
  };
  const text = JSON.stringify(doc, null, 2) + "\n";
  const latest = path.join(dir, "latest.json");
  const dated = path.join(dir, `${date.toISOString().slice(0, 19).replace(/:/g, "-")}.json`);
  fs.writeFileSync(latest, text);
  fs.writeFileSync(dated, text);
  return [latest, dated];
}
