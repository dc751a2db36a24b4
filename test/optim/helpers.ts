// Shared test helpers: setting exact gradients, and PyTorch (via /usr/bin/python3) as a reference.
import { spawnSync } from "child_process";
import { Tensor, tensor, Dtype } from "../../lib";

const PYTHON = "/usr/bin/python3";
let torchChecked: boolean | undefined;

/** Whether /usr/bin/python3 can import torch; prints a visible note once when it cannot. */
export function torchAvailable(): boolean {
  if (torchChecked === undefined) {
    const r = spawnSync(PYTHON, ["-c", "import torch"], { encoding: "utf8" });
    torchChecked = r.status === 0;
    if (!torchChecked) console.warn(`NOTE: PyTorch comparison tests skipped: ${PYTHON} -c "import torch" failed (${(r.stderr || String(r.error)).trim().split("\n").pop()})`);
  }
  return torchChecked;
}

/** Runs a Python script with `input` as JSON on stdin; returns its stdout parsed as JSON. */
export function runTorch<T>(script: string, input: unknown): T {
  const r = spawnSync(PYTHON, ["-c", script], { input: JSON.stringify(input), encoding: "utf8", maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`python failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

/** Gives `p` exactly the gradient `g` (replacing any previous one): d/dp sum(p * g) = g. */
export function setGrad(p: Tensor, g: readonly number[]): void {
  p.grad = null;
  p.mul(tensor(g as number[], { dtype: p.dtype, shape: p.shape })).sum().backward();
}

/** A leaf parameter with the given values. */
export function param(values: readonly number[], shape: number[], dtype: Dtype = "float32"): Tensor {
  return tensor(values as number[], { shape, dtype, requiresGrad: true });
}

/** Deterministic pseudo-random values in [-1, 1) (a small LCG, so PyTorch gets the same inputs). */
export function values(n: number, seed: number): number[] {
  let s = seed >>> 0;
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out.push(s / 2 ** 31 - 1);
  }
  return out;
}

/** Largest absolute elementwise difference. */
export function maxAbsDiff(a: readonly number[], b: readonly number[]): number {
  expect(a.length).toBe(b.length);
  return a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);
}

/**
 * Python driver: builds params from `params` ([values, shape] pairs), runs `steps` optimizer steps
 * with the given per-step gradients (null = no gradient), prints the final params.
 */
export const TORCH_DRIVER = `
import json, sys, torch
cfg = json.load(sys.stdin)
dtype = getattr(torch, cfg["dtype"])
ps = [torch.tensor(v, dtype=dtype).reshape(s).requires_grad_() for v, s in cfg["params"]]
opt = eval(cfg["ctor"])(ps, **cfg["kwargs"])
for grads in cfg["grads"]:
    for p, g in zip(ps, grads):
        p.grad = None if g is None else torch.tensor(g, dtype=dtype).reshape(p.shape)
    opt.step()
print(json.dumps([p.detach().double().flatten().tolist() for p in ps]))
`;
