// Shared optimizer test helpers: setting exact gradients, and PyTorch (the reference Python of
// test/helpers/python.ts) as a reference.
import { Tensor, tensor, Dtype } from "../../lib";
import { hasTorch, runPythonJson } from "../helpers/python";

/** Whether the reference Python can import torch. */
export const torchAvailable = hasTorch;

/** Runs a Python script with `input` as JSON on stdin; returns its stdout parsed as JSON. */
export const runTorch = runPythonJson;

/** Gives `p` exactly the gradient `g` (replacing any previous one): d/dp sum(p * g) = g. */
export function setGrad(p: Tensor, g: readonly number[]): void {
  p.grad = null;
  p.mul(tensor(g as number[], { dtype: p.dtype, shape: p.shape }))
    .sum()
    .backward();
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
