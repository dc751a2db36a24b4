/** Times a call: warm-up batches first, then the per-call cost of each timed batch. */
import { Timing } from "./types";

/** How a case is timed: the same scheme for torch-lora, PyTorch and the native floor. */
export interface MeasureOptions {
  warmupBatches: number;
  batches: number;
  callsPerBatch: number;
}

/** Median, min and max of the per-call time over `batches` batches of `callsPerBatch` calls. */
export function measure(fn: () => unknown, options: MeasureOptions): Timing {
  return measureLoop((n) => {
    const start = process.hrtime.bigint();
    for (let i = 0; i < n; i++) fn();
    return Number(process.hrtime.bigint() - start);
  }, options);
}

/** Like {@link measure} for a loop that runs `n` calls itself and returns the elapsed ns (the native floor). */
export function measureLoop(loop: (n: number) => number, options: MeasureOptions): Timing {
  const { warmupBatches, batches, callsPerBatch } = options;
  const perCall: number[] = [];
  for (let b = 0; b < warmupBatches + batches; b++) {
    const ns = loop(callsPerBatch);
    if (b >= warmupBatches) perCall.push(ns / callsPerBatch / 1000);
  }
  return summarize(perCall, callsPerBatch);
}

/**
 * Calls per batch so that one batch takes about `batchMs`: the call is timed a few times
 * (its first runs also warm caches and the JIT) and the fastest run decides.
 */
export function calibrate(fn: () => unknown, batchMs: number): number {
  let best = Infinity;
  let n = 1;
  for (let round = 0; round < 4; round++) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < n; i++) fn();
    const ns = Number(process.hrtime.bigint() - start) / n;
    best = Math.min(best, ns);
    if (ns * n > batchMs * 2e5) break; // already a fifth of a batch per round: big enough to judge
    n = Math.min(n * 8, 4096);
  }
  return Math.max(1, Math.round((batchMs * 1e6) / best));
}

/** Median/min/max of per-call microsecond figures. */
export function summarize(perCallUs: number[], callsPerBatch: number): Timing {
  const sorted = perCallUs.slice().sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const medianUs = sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  return { medianUs, minUs: sorted[0], maxUs: sorted[sorted.length - 1], batches: sorted.length, callsPerBatch };
}
