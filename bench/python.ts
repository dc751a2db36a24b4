/**
 * The PyTorch side of the benchmarks: one `/usr/bin/python3` process times every case with
 * the same batch scheme as {@link measure} (warm-up, then per-call cost of each batch).
 */
import { spawnSync } from "child_process";
import { summarize } from "./measure";
import { BenchCase, Timing } from "./types";

const PYTHON = process.env.TORCH_LORA_PYTHON ?? "/usr/bin/python3";

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
out = {}
for case in spec["cases"]:
    ns = {"torch": torch}
    exec(case["setup"], ns)
    timer = timeit.Timer(case["stmt"], globals=ns)
    per_call = []
    for b in range(spec["warmup"] + spec["batches"]):
        seconds = timer.timeit(number=spec["calls"])
        if b >= spec["warmup"]:
            per_call.append(seconds / spec["calls"] * 1e6)
    out[case["name"]] = per_call
print(json.dumps(out))
`;

/** Times the cases that have a `python` form; returns timings by case name. */
export function measurePython(
  cases: BenchCase[],
  options: { warmupBatches: number; batches: number; callsPerBatch: number },
): Record<string, Timing> {
  const withPython = cases.filter((c) => c.python);
  const spec = {
    cases: withPython.map((c) => ({ name: c.name, ...c.python })),
    warmup: options.warmupBatches,
    batches: options.batches,
    calls: options.callsPerBatch,
  };
  const r = spawnSync(PYTHON, ["-c", RUNNER], { input: JSON.stringify(spec), encoding: "utf8", maxBuffer: 16 << 20 });
  if (r.status !== 0) throw new Error(`PyTorch benchmark failed:\n${r.stderr}`);
  const raw = JSON.parse(r.stdout) as Record<string, number[]>;
  return Object.fromEntries(Object.entries(raw).map(([name, perCall]) => [name, summarize(perCall, options.callsPerBatch)]));
}
