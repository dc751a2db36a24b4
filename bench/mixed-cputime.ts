/**
 * Mixed-adapter batches timed by process CPU time rather than wall time, the cases interleaved
 * round by round and the best round kept: on a shared machine, wall-clock medians of millisecond
 * calls swing by 2x between runs, while CPU time of one thread is steady to a few percent.
 * 32 rows, Linear(1024, 1024), 16 adapters of rank 16 loaded; 1, 4 and 16 distinct adapters in
 * the batch; torch-lora next to PEFT's `adapter_names=` loop (bench/python/peft_mixed.py) on
 * /usr/bin/python3's torch. Run with OMP_NUM_THREADS=1: node dist/bench/mixed-cputime.js
 */
import { spawnSync } from "child_process";
import * as path from "path";
import * as init from "../lib/init";
import { injectAdapter } from "../lib/lora/model";
import { Linear } from "../lib/nn/layers";
import { Sequential } from "../lib/nn/module";
import { Tensor, noGrad, randn } from "../lib/tensor";

const ROWS = 32;

function ours(rounds = 15, calls = 20): Record<string, number> {
  const lm = injectAdapter(new Sequential(new Linear(1024, 1024)), { r: 16, loraAlpha: 16, targetModules: ["0"] }, "a0");
  for (let k = 1; k < 16; k++) lm.addAdapter(`a${k}`, { r: 16, loraAlpha: 16, targetModules: ["0"] });
  for (const [, layer] of lm.loraLayers()) for (const n of layer.adapterNames) noGrad(() => init.normal_(layer.factors(n)[1], 0, 0.02));
  lm.eval();
  const x = randn([ROWS, 1024]);
  const names = (d: number) => Array.from({ length: ROWS }, (_, i) => `a${i % d}`);
  const cases: Record<string, () => void> = {
    "single adapter (plain forward)": () => noGrad(() => lm.forward(x) as Tensor).dispose(),
    "1": () => noGrad(() => lm.withAdapterNames(names(1), () => lm.forward(x) as Tensor)).dispose(),
    "4": () => noGrad(() => lm.withAdapterNames(names(4), () => lm.forward(x) as Tensor)).dispose(),
    "16": () => noGrad(() => lm.withAdapterNames(names(16), () => lm.forward(x) as Tensor)).dispose(),
  };
  const best: Record<string, number> = {};
  for (let round = 0; round < rounds; round++) {
    for (const [k, f] of Object.entries(cases)) {
      const t = process.cpuUsage();
      for (let i = 0; i < calls; i++) f();
      const u = process.cpuUsage(t);
      best[k] = Math.min(best[k] ?? Infinity, (u.user + u.system) / calls);
    }
  }
  return best;
}

function peft(): Record<string, number> | null {
  const script = path.resolve(__dirname, "..", "..", "bench", "python", "peft_mixed.py");
  const r = spawnSync(process.env.TORCH_LORA_PYTHON ?? "/usr/bin/python3", [script], { encoding: "utf8" });
  if (r.status !== 0) {
    console.log(`note: PEFT-style side skipped (${r.stderr.trim().split("\n").pop()})`);
    return null;
  }
  return JSON.parse(r.stdout) as Record<string, number>;
}

const js = ours();
const py = peft();
const f = (v: number | undefined) => (v === undefined ? "—" : v.toFixed(0));
console.log("| distinct adapters | torch-lora µs | PEFT adapter_names µs | ÷ PEFT | ÷ torch-lora 1 adapter |\n|---|---:|---:|---:|---:|");
console.log(`| single adapter (plain forward) | ${f(js["single adapter (plain forward)"])} | — | — | — |`);
for (const d of ["1", "4", "16"]) {
  const ratio = py ? (js[d] / py[d]).toFixed(2) : "—";
  console.log(`| ${d} | ${f(js[d])} | ${f(py?.[d])} | ${ratio} | ${(js[d] / js["1"]).toFixed(2)} |`);
}
