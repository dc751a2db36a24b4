/**
 * The PyTorch side of the benchmarks: one `/usr/bin/python3` process times every case with
 * the same batch scheme as {@link measure} (warm-up, then per-call cost of each batch), with
 * bench/python/ on its path for the PEFT-style reference layers.
 */
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { MeasureOptions, summarize } from "./measure";
import { BenchCase, Timing } from "./types";

const PYTHON = process.env.TORCH_LORA_PYTHON ?? "/usr/bin/python3";
/** bench/python/ in the source tree, from bench/ (ts) or dist/bench/ (compiled). */
const PY_DIR = [path.resolve(__dirname, "python"), path.resolve(__dirname, "..", "..", "bench", "python")].find((d) =>
  fs.existsSync(path.join(d, "peft_reference.py")),
);

/** PyTorch's version, or null (with the reason) when `python3 -c "import torch"` fails. */
export function torchVersion(): { version: string | null; reason?: string } {
  const r = spawnSync(PYTHON, ["-c", "import torch; print(torch.__version__)"], { encoding: "utf8" });
  if (r.status !== 0) return { version: null, reason: (r.stderr || r.error?.message || "").trim().split("\n").pop() };
  return { version: r.stdout.trim() };
}

const RUNNER = `
import json, sys, timeit
import torch
spec = json.loads(sys.stdin.read())
sys.path.insert(0, spec["path"])
out = {}
for case in spec["cases"]:
    ns = {"torch": torch}
    exec(case["setup"], ns)
    timer = timeit.Timer(case["stmt"], globals=ns)
    per_call = []
    for b in range(case["warmup"] + case["batches"]):
        seconds = timer.timeit(number=case["calls"])
        if b >= case["warmup"]:
            per_call.append(seconds / case["calls"] * 1e6)
    out[case["name"]] = per_call
print(json.dumps(out))
`;

/** Times the cases that have a `python` form, each with its own options; returns timings by case name. */
export function measurePython(cases: { c: BenchCase; options: MeasureOptions }[]): Record<string, Timing> {
  const withPython = cases.filter(({ c }) => c.python);
  if (withPython.length === 0) return {};
  if (!PY_DIR) throw new Error("bench/python/peft_reference.py not found next to the benchmark");
  const spec = {
    path: PY_DIR,
    cases: withPython.map(({ c, options }) => ({
      name: c.name,
      ...c.python,
      warmup: options.warmupBatches,
      batches: options.batches,
      calls: options.callsPerBatch,
    })),
  };
  const r = spawnSync(PYTHON, ["-c", RUNNER], { input: JSON.stringify(spec), encoding: "utf8", maxBuffer: 16 << 20 });
  if (r.status !== 0) throw new Error(`PyTorch benchmark failed:\n${r.stderr}`);
  const raw = JSON.parse(r.stdout) as Record<string, number[]>;
  const calls = Object.fromEntries(withPython.map(({ c, options }) => [c.name, options.callsPerBatch]));
  return Object.fromEntries(Object.entries(raw).map(([name, perCall]) => [name, summarize(perCall, calls[name])]));
}
