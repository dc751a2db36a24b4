/**
 * LoRA Linear forward + backward (r 16, fp32, frozen base) by process CPU time, torch-lora
 * against the PEFT-style reference of bench/python/peft_reference.py, round by round (a batch of
 * calls on each side per round), for a machine too loaded for wall-clock medians. Single-threaded
 * (OMP_NUM_THREADS=1 is set for the Python side; set it for this process too), best batch per round.
 *
 * Run: OMP_NUM_THREADS=1 node dist/bench/diagnose/lora-backward.js [--shape 1x256] [--rounds 5] [--no-input-grad]
 */
import "../addon"; // the bench addon must load before lib/binding (bench/cases/fixtures uses it)
import { spawnSync } from "child_process";
import * as path from "path";
import { randn } from "../../lib/tensor";
import { loraLinear } from "../cases/fixtures";

const args = process.argv.slice(2);
const value = (name: string, fallback: string) => (args.includes(name) ? args[args.indexOf(name) + 1] : fallback);
const [tokens, dim] = value("--shape", "1x256").split("x").map(Number);
const rounds = Number(value("--rounds", "5"));
const inputGrad = !args.includes("--no-input-grad");
const calls = Math.max(20, Math.round(2e6 / (tokens * dim)));

/** Best per-call CPU µs over 5 batches of `calls`. */
function cpuTime(call: () => void): number {
  for (let i = 0; i < calls; i++) call();
  let best = Infinity;
  for (let b = 0; b < 5; b++) {
    const u0 = process.cpuUsage();
    for (let i = 0; i < calls; i++) call();
    const u = process.cpuUsage(u0);
    best = Math.min(best, (u.user + u.system) / calls);
  }
  return best;
}

const PYTHON = `
import sys, time, torch, torch.nn as nn
sys.path.insert(0, ${JSON.stringify(path.join(__dirname, "..", "..", "..", "bench", "python"))})
from peft_reference import LoraLinearRef
torch.manual_seed(0)
layer = LoraLinearRef(nn.Linear(${dim}, ${dim}), 16, 16)
x = torch.randn(${tokens}, ${dim})${inputGrad ? ".requires_grad_()" : ""}
g = torch.randn(${tokens}, ${dim})
for _ in range(${calls}): layer(x).backward(g)
best = 1e9
for _ in range(5):
    t = time.process_time()
    for _ in range(${calls}): layer(x).backward(g)
    best = min(best, (time.process_time() - t) / ${calls} * 1e6)
print(best)
`;

const layer = loraLinear(dim, dim, 16);
const x = randn([tokens, dim], { requiresGrad: inputGrad });
const g = randn([tokens, dim]);
const ours: number[] = [];
const theirs: number[] = [];
for (let r = 0; r < rounds; r++) {
  ours.push(
    cpuTime(() => {
      const y = layer.forward(x);
      y.backward(g);
      y.dispose();
    }),
  );
  const py = spawnSync(process.env.TORCH_LORA_PYTHON ?? "/usr/bin/python3", ["-c", PYTHON], {
    encoding: "utf8",
    env: { ...process.env, OMP_NUM_THREADS: "1" },
  });
  if (py.status !== 0) throw new Error(py.stderr);
  theirs.push(Number(py.stdout.trim()));
}
const fmt = (xs: number[]) => xs.map((v) => v.toFixed(1)).join(" ");
console.log(`lora linear ${tokens}x${dim} fwd+bwd${inputGrad ? ", input requires grad" : ""}: CPU µs per call, best of 5 batches of ${calls}`);
console.log(`  torch-lora: ${fmt(ours)}`);
console.log(`  PEFT-style: ${fmt(theirs)}`);
console.log(
  `  ratio per round: ${ours.map((v, i) => (v / theirs[i]).toFixed(2)).join(" ")}; best ÷ best ${(Math.min(...ours) / Math.min(...theirs)).toFixed(2)}`,
);
