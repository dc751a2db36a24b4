/**
 * File fuzzing into a model (the loader alone is fuzzed in test/io/safetensors-fuzz.test.ts):
 * mutated, truncated and inconsistent state-dict files through loadStateDictFile +
 * Module.loadStateDict, and PEFT adapter directories (bad or missing adapter_config.json,
 * missing or empty weights, shapes that do not fit the model, huge declared header lengths)
 * through lora.loadAdapter — that part runs once the package has loadAdapter — some of them with
 * a FIFO, a symbolic link to a FIFO, a folder or a device in place of a file, and such folders
 * through loadAdapterAsync / loadStateDictFile, which must settle with a FormatError (a FIFO
 * once hung them for ever). Every load succeeds or throws a JS Error that leaves the model
 * bit-for-bit unchanged; RSS stays bounded.
 * Seed: TL_FUZZ_SEED.
 */
import * as path from "path";
import { lora } from "../../lib";
import { DIST, itDist, runNode } from "./support/child";

const RUNS = 1500; // per part
const SEED = Number(process.env.TL_FUZZ_SEED ?? 20240611);
const hasLoadAdapter = typeof (lora as Record<string, unknown>).loadAdapter === "function";
if (!hasLoadAdapter) console.warn("file fuzz: lora.loadAdapter is not in this build yet; the adapter-directory part is skipped");

itDist(
  `file fuzz: ${RUNS} state-dict files${hasLoadAdapter ? ` and ${RUNS} adapter directories` : ""} load or fail cleanly, never crash, never half-load`,
  () => {
    const r = runNode<{
      runs: number;
      adapterRuns: number;
      nonRegularSyncRuns: number;
      nonRegularRuns: number;
      loaded: number;
      threw: number;
      failureCount: number;
      failures: unknown[];
      peakRss: number;
    }>([path.join(__dirname, "support/file-fuzz.js"), DIST, String(RUNS), String(SEED)], 120_000);
    expect({ status: r.status, signal: r.signal }).toEqual({ status: 0, signal: null });
    const s = r.result!;
    console.log(
      `file fuzz (seed ${SEED}): ${s.runs} loads (${s.adapterRuns} adapter directories, ${s.nonRegularSyncRuns} of them with a non-regular file, and ${s.nonRegularRuns} async loads of such folders), ` +
        `${s.loaded} loaded, ${s.threw} threw; peak RSS ${(s.peakRss / 2 ** 20).toFixed(0)} MiB`,
    );
    expect(s.failures).toEqual([]);
    expect(s.nonRegularRuns).toBe(hasLoadAdapter ? Math.ceil(RUNS / 10) : 0);
    if (hasLoadAdapter) expect(s.nonRegularSyncRuns).toBeGreaterThan(RUNS / 4);
    expect(s.runs).toBe(RUNS + (hasLoadAdapter ? RUNS : 0) + s.nonRegularRuns);
    expect(s.adapterRuns).toBe(hasLoadAdapter ? RUNS : 0);
    // Both outcomes occur, so mutations reach past the first checks.
    expect(s.loaded).toBeGreaterThan(0);
    expect(s.threw).toBeGreaterThan(0);
    // Huge declared lengths and shapes are refused before allocation: no load balloons memory.
    expect(s.peakRss).toBeLessThan(1024 * 2 ** 20);
  },
  120_000,
);
