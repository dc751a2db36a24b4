/**
 * `npm run bench`: torch-lora from Node next to (a) a PEFT-style PyTorch-eager reference run by
 * `/usr/bin/python3` (the same libtorch build, so the ratio measures the binding and the fused
 * kernels) and (b) the native floor: the same kernels in a C++ loop with no JS in between.
 * Then (not with --quick) the load time and peak RSS of `models.fromPretrained` on a GPT-2-small
 * checkpoint, in child processes (bench/models-load.ts).
 * Options: --quick (a fast subset, fewer batches), --filter <substring> (also matched against
 * the section name "models.fromPretrained load"), --memory (the memory-growth check of
 * bench/memory.ts instead).
 */
import { GCProfiler } from "v8";
// First: makes the benchmark addon (with the native floors) the addon this process loads.
import "./addon";
import { native } from "../lib/binding";
import { allCases } from "./cases";
import { calibrate, measure, measureLoop, MeasureOptions } from "./measure";
import { runMemoryCheck } from "./memory";
import { ModelsLoadResult, formatModelsLoad, measureModelsLoad } from "./models-load";
import { measurePython, torchVersion } from "./python";
import { ReportRow, formatTable, machineLine, writeResults } from "./report";
import { BenchCase } from "./types";

function planFor(c: BenchCase, quick: boolean): MeasureOptions {
  const batchMs = (c.batchMs ?? 40) / (quick ? 2 : 1);
  const callsPerBatch = calibrate(c.js(), batchMs);
  const big = (c.batches ?? 9) < 9;
  return {
    warmupBatches: big || quick ? 1 : 2,
    batches: quick ? Math.min(5, c.batches ?? 9) : (c.batches ?? 9),
    callsPerBatch,
  };
}

const LOAD_SECTION = "models.fromPretrained load";

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  if (args.includes("--memory")) {
    void runMemoryCheck({ quick: args.includes("--quick") }).catch((e: unknown) => {
      console.error(e);
      process.exitCode = 1;
    });
    return;
  }
  const quick = args.includes("--quick");
  const filterAt = args.indexOf("--filter");
  const filter = filterAt >= 0 ? (args[filterAt + 1] ?? "") : "";
  const cases = allCases.filter((c) => c.name.includes(filter) && (!quick || c.quick));
  const started = Date.now();

  const torch = torchVersion();
  if (!torch.version) {
    console.log(`note: PyTorch comparison skipped (/usr/bin/python3 cannot import torch: ${torch.reason ?? "unknown"})`);
  }
  // Each case runs its three sides back to back (Python in its own short-lived process), so
  // that the ratios compare figures taken under the same machine load.
  const rows: ReportRow[] = [];
  for (const c of cases) {
    process.stderr.write(`  ${c.name} ...\n`);
    await c.prepare?.();
    const options = planFor(c, quick);
    const fn = c.js();
    // V8's own accounting of collection time (synchronous, unlike perf_hooks' 'gc' entries).
    const profiler = new GCProfiler();
    profiler.start();
    const js = measure(fn, options);
    const gcUs = profiler.stop().statistics.reduce((us, s) => us + s.cost, 0) / ((options.warmupBatches + options.batches) * options.callsPerBatch);
    const floor = c.floor ? measureLoop(c.floor(), options) : null;
    const python = torch.version && c.python ? (measurePython([{ c, options }])[c.name] ?? null) : null;
    rows.push({ name: c.name, group: c.group, js, python, floor, itemsPerCall: c.itemsPerCall, gcUs });
  }
  let modelsLoad: ModelsLoadResult | null = null;
  if (!quick && LOAD_SECTION.includes(filter)) {
    process.stderr.write(`  ${LOAD_SECTION} (child processes) ...\n`);
    modelsLoad = measureModelsLoad();
  }

  const meta = { torch: torch.version, libtorch: native.buildInfo().torchVersion };
  console.log(`torch-lora bench (${quick ? "quick" : "full"}): median µs per call (min..max over timed batches); ${machineLine(meta)}`);
  if (rows.length) console.log(formatTable(rows));
  if (modelsLoad) console.log(`\n**${LOAD_SECTION}** (each in a fresh process)\n\n${formatModelsLoad(modelsLoad).join("\n")}`);
  const files = writeResults(rows, { ...meta, quick, modelsLoad, seconds: (Date.now() - started) / 1000 });
  console.log(`\n${((Date.now() - started) / 1000).toFixed(0)} s; results written to ${files.join(" and ")}`);
}

void main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
