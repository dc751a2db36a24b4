/**
 * Runs the independent Python reference (hf_reference.py, plain PyTorch written from the
 * transformers source) with the interpreter of test/helpers/python.ts.
 */
import { spawnSync } from "child_process";
import * as path from "path";
import { Tensor } from "../../../lib";

const PYTHON = process.env.TORCH_LORA_PYTHON ?? "/usr/bin/python3";
const SCRIPT = path.join(__dirname, "hf_reference.py");

/** Sends one request to the reference and returns its answer. */
export function reference<T = Record<string, unknown>>(request: Record<string, unknown>): T {
  const r = spawnSync(PYTHON, [SCRIPT], { input: JSON.stringify(request), encoding: "utf8", maxBuffer: 256 << 20 });
  if (r.status !== 0) throw new Error(`python reference failed (${r.status}):\n${r.stderr}`);
  return JSON.parse(r.stdout.trim().split("\n").pop() as string) as T;
}

/**
 * The largest deviation of `actual` from `expected`, relative to the largest magnitude of
 * `expected` (elements near zero are judged on the tensor's scale, as allclose's atol does).
 */
export function relativeError(actual: Tensor | number[], expected: number[]): number {
  const a = actual instanceof Tensor ? (actual.to("float64").toList() as number[]) : actual;
  if (a.length !== expected.length) throw new Error(`length ${a.length} != ${expected.length}`);
  let scale = 0;
  let worst = 0;
  for (let i = 0; i < a.length; i++) {
    scale = Math.max(scale, Math.abs(expected[i]));
    worst = Math.max(worst, Math.abs(a[i] - expected[i]));
  }
  return worst / (scale || 1);
}

/** The elements of `values (B, T, V)` at the positions where `mask (B, T)` is 1, flattened. */
export function atRealTokens(values: number[], shape: number[], mask: number[][]): number[] {
  const [B, T, V] = shape;
  const out: number[] = [];
  for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) if (mask[b][t]) out.push(...values.slice((b * T + t) * V, (b * T + t + 1) * V));
  return out;
}
