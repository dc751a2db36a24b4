/** Shared shapes of benchmark cases and their results. */

/** One benchmark case: the same operation written for torch-lora and for PyTorch. */
export interface BenchCase {
  /** Short unique name, e.g. `sum(4 f32)`. */
  name: string;
  /** Builds the inputs once and returns the call to time (one call = one operation). */
  js: () => () => unknown;
  /** The same operation in PyTorch: `setup` runs once, `stmt` is timed (timeit-style). */
  python?: { setup: string; stmt: string };
}

/** Per-call cost in microseconds over several timed batches. */
export interface Timing {
  medianUs: number;
  minUs: number;
  maxUs: number;
  batches: number;
  callsPerBatch: number;
}
