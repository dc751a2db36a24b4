/** Shared shapes of benchmark cases and their results. */

/** One benchmark case: the same operation in torch-lora, in PyTorch, and as a native floor. */
export interface BenchCase {
  /** Short unique name, e.g. `sum(4 f32)`. */
  name: string;
  /** Section of the report the case belongs to. */
  group: string;
  /** Part of the `--quick` subset. */
  quick?: boolean;
  /** Wall time one timed batch should take, in ms (default 40); calls per batch follow from it. */
  batchMs?: number;
  /** Number of timed batches (default 9; fewer for big shapes). */
  batches?: number;
  /** Items (tokens) one call processes: the report adds a throughput column when set. */
  itemsPerCall?: number;
  /** Runs once before `js` and `python` (and only for a case that runs): writes files, loads models. */
  prepare?: () => Promise<void>;
  /** Builds the inputs once and returns the call to time (one call = one operation). */
  js: () => () => unknown;
  /** The same operation in PyTorch: `setup` runs once, `stmt` is timed (timeit-style). */
  python?: { setup: string; stmt: string };
  /** Builds the inputs once and returns a native loop that runs the operation `n` times and returns the elapsed ns. */
  floor?: () => (n: number) => number;
}

/** Per-call cost in microseconds over several timed batches. */
export interface Timing {
  medianUs: number;
  minUs: number;
  maxUs: number;
  batches: number;
  callsPerBatch: number;
}
