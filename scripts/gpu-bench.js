#!/usr/bin/env node
"use strict";
// A short GPU benchmark, run by scripts/gpu-check.sh: a LoRA Linear layer's forward + backward on
// cuda:0 through torch-lora (dist/), against the same computation in PyTorch on the same machine
// (the libtorch the addon is linked against). Prints one table; asserts nothing.
//   node scripts/gpu-bench.js [--python PY] [--device cpu --small]   (cpu/small: to check the script without a GPU)
const path = require("path");
const { spawnSync } = require("child_process");
const { nn, lora, randn, manualSeed, noGrad, cuda } = require(path.resolve(__dirname, "../dist/lib"));

const arg = (name) => (process.argv.includes(name) ? process.argv[process.argv.indexOf(name) + 1] : undefined);
const python = arg("--python") || process.env.PYTHON || "python3";
const DEVICE = arg("--device") || "cuda:0";
const FULL_CASES = [
  { tokens: 1, dim: 4096, r: 16, dtype: "float32" },
  { tokens: 4096, dim: 4096, r: 16, dtype: "float32" },
  { tokens: 4096, dim: 4096, r: 16, dtype: "bfloat16" },
];
const CASES = process.argv.includes("--small")
  ? [
      { tokens: 1, dim: 64, r: 4, dtype: "float32" },
      { tokens: 256, dim: 64, r: 4, dtype: "float32" },
    ]
  : FULL_CASES;
const WARMUP = 10;
const ITERS = 50;

/** Median of `rounds` timings of ITERS steps each, in microseconds per step. */
function timeSteps(step, sync, rounds = 5) {
  for (let i = 0; i < WARMUP; i++) step();
  sync();
  const per = [];
  for (let r = 0; r < rounds; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < ITERS; i++) step();
    sync();
    per.push(Number(process.hrtime.bigint() - t0) / 1e3 / ITERS);
  }
  return per.sort((a, b) => a - b)[Math.floor(rounds / 2)];
}

function ours({ tokens, dim, r, dtype }) {
  manualSeed(0);
  const model = new nn.Sequential(new nn.Linear(dim, dim, { dtype, device: DEVICE }));
  const lm = lora.injectAdapter(model, { r, loraAlpha: 2 * r, targetModules: ["0"] });
  const x = randn([tokens, dim], { dtype, device: DEVICE });
  // Each step releases the previous step's output, as PyTorch's refcounting does: left to the
  // collector, 4096² outputs would pile up on the GPU and every step would allocate afresh.
  let last = null;
  const keep = (t) => {
    last?.dispose();
    last = t;
  };
  const fwd = timeSteps(
    () => noGrad(() => keep(lm.forward(x))),
    () => last.sum().item(),
  );
  const fwdBwd = timeSteps(
    () => {
      const y = lm.forward(x);
      keep(y.mean());
      y.dispose();
      last.backward();
    },
    () => last.item(),
  );
  return { fwd, fwdBwd };
}

const PY = `
import json, sys, time, torch
cases = json.loads(sys.argv[1]); dev = sys.argv[2]
sync = torch.cuda.synchronize if dev.startswith("cuda") else (lambda: None); WARMUP, ITERS = ${WARMUP}, ${ITERS}
def timed(step, rounds=5):
    for _ in range(WARMUP): step()
    sync(); per = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(ITERS): step()
        sync(); per.append((time.perf_counter() - t0) / ITERS * 1e6)
    return sorted(per)[rounds // 2]
out = []
for c in cases:
    torch.manual_seed(0); dt = getattr(torch, c["dtype"]); d, r = c["dim"], c["r"]
    base = torch.nn.Linear(d, d, device=dev, dtype=dt)
    for p in base.parameters(): p.requires_grad_(False)
    A = torch.nn.Parameter(torch.randn(r, d, device=dev, dtype=dt) * 0.01)
    B = torch.nn.Parameter(torch.zeros(d, r, device=dev, dtype=dt))
    x = torch.randn(c["tokens"], d, device=dev, dtype=dt); s = 2.0
    f = lambda: base(x) + s * ((x @ A.t()) @ B.t())
    def fwd():
        with torch.no_grad(): f()
    def fb(): f().mean().backward()
    out.append({"fwd": timed(fwd), "fwdBwd": timed(fb)})
print(json.dumps(out))
`;

function main() {
  if (DEVICE !== "cpu" && !cuda.isAvailable()) throw new Error("cuda.isAvailable() is false: build against a CUDA libtorch on a GPU machine first");
  const mine = CASES.map(ours);
  const py = spawnSync(python, ["-c", PY, JSON.stringify(CASES), DEVICE], { encoding: "utf8", timeout: 240000 });
  const theirs = py.status === 0 ? JSON.parse(py.stdout.trim().split("\n").pop()) : null;
  if (!theirs) console.error(`PyTorch baseline failed: ${py.stderr}`);
  console.log(`LoRA Linear on ${DEVICE}, median µs per step (torch-lora | PyTorch, same libtorch):`);
  console.log("tokens  dim    r   dtype     forward            forward+backward");
  CASES.forEach((c, i) => {
    const t = theirs ? theirs[i] : { fwd: NaN, fwdBwd: NaN };
    const cell = (a, b) => `${a.toFixed(1).padStart(8)} | ${b.toFixed(1).padEnd(8)}`;
    console.log(
      `${String(c.tokens).padEnd(7)} ${String(c.dim).padEnd(6)} ${String(c.r).padEnd(3)} ${c.dtype.padEnd(9)} ${cell(mine[i].fwd, t.fwd)} ${cell(mine[i].fwdBwd, t.fwdBwd)}`,
    );
  });
}

main();
