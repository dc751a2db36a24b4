/** Times a JS call: warm-up batches first, then the per-call cost of each timed batch. */
import { Timing } from "./types";

/** Options of {@link measure}; the defaults suit calls of roughly 1–100 µs. */
export interface MeasureOptions {
  warmupBatches?: number;
  batches?: number;
  callsPerBatch?: number;
}

/** Median, min and max of the per-call time over `batches` batches of `callsPerBatch` calls. */
export function measure(fn: () => unknown, options: MeasureOptions = {}): Timing {
  const { warmupBatches = 3, batches = 15, callsPerBatch = 20_000 } = options;
  const perCall: number[] = [];
  for (let b = 0; b < warmupBatches + batches; b++) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < callsPerBatch; i++) fn();
    const ns = Number(process.hrtime.bigint() - start);
    if (b >= warmupBatches) perCall.push(ns / callsPerBatch / 1000);
  }
  return summarize(perCall, callsPerBatch);
}

/** Median/min/max of per-call microsecond figures. */
export function summarize(perCallUs: number[], callsPerBatch: number): Timing {
  const sorted = perCallUs.slice().sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const medianUs = sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  return { medianUs, minUs: sorted[0], maxUs: sorted[sorted.length - 1], batches: sorted.length, callsPerBatch };
}
