/**
 * Memory: tensors released with dispose() or left to the garbage collector do not pile up.
 *
 * The check counts live native tensors (`memoryStats()`), which is exact: with dispose() the
 * count is back to its warm-up value right after the loop, before any collection; relying on
 * the collector, it is back after a few collections. A tensor kept per step would leave 20 000
 * (or 60 000) behind; the bound is 0.
 *
 * The loops run in child processes (`node --expose-gc`) against dist/, so that collections can
 * be forced. RSS is logged and bounded only as a secondary signal: on the 2-core CPU machine
 * (Node 20, libtorch 1.13.1) it grew 5–15 MiB with dispose() and 10–25 MiB relying on the
 * collector over 20 000 steps (allocator noise), so its bound only catches gross native leaks.
 */
import { spawnSync } from "child_process";
import * as path from "path";
import { Worker } from "worker_threads";
import { memoryStats, zeros } from "../../lib";
import { DIST, itDist } from "../reliability/support/child";
import { collectLeftovers } from "../helpers/memory";

const fixture = path.resolve(__dirname, "../fixtures/memory-loop.js");
const RSS_BOUND = 64 * 2 ** 20;

interface Snapshot {
  rss: number;
  liveTensors: number;
  liveBytes: number;
}

describe("memoryStats counts live native tensors", () => {
  // Everything made here stays referenced until disposed, so no collection can change the
  // count between two readings.
  it("counts a new tensor and its bytes, and forgets it on dispose (once)", () => {
    const before = memoryStats();
    const a = zeros([256]); // 1 KiB of float32
    const b = zeros([3, 5], { dtype: "float64" }); // 120 bytes
    expect(memoryStats()).toEqual({ liveTensors: before.liveTensors + 2, liveBytes: before.liveBytes + 1024 + 120 });
    a.dispose();
    a.dispose();
    expect(memoryStats()).toEqual({ liveTensors: before.liveTensors + 1, liveBytes: before.liveBytes + 120 });
    b.dispose();
    expect(memoryStats()).toEqual(before);
  });

  it("counts a view by its own elements", () => {
    const before = memoryStats();
    const a = zeros([4, 8]);
    const row = a.narrow(0, 1, 1);
    expect(memoryStats()).toEqual({ liveTensors: before.liveTensors + 2, liveBytes: before.liveBytes + 128 + 32 });
    row.dispose();
    a.dispose();
    expect(memoryStats()).toEqual(before);
  });
});

describe("memoryStats counts across worker threads", () => {
  // A worker (its own Node-API env) makes three 1 KiB tensors, reports, waits, disposes them.
  const code = `
    const { parentPort, workerData } = require("worker_threads");
    const t = require(workerData);
    const held = [t.zeros([256]), t.zeros([256]), t.zeros([256])];
    parentPort.postMessage("made");
    parentPort.once("message", () => {
      held.forEach((x) => x.dispose());
      parentPort.postMessage("disposed");
    });`;
  itDist("tensors made in a worker count in the main thread's reading, and leave it when disposed there", async () => {
    await collectLeftovers();
    const before = memoryStats();
    const w = new Worker(code, { eval: true, workerData: DIST });
    const next = (): Promise<string> => new Promise((resolve, reject) => (w.once("message", resolve), w.once("error", reject)));
    try {
      expect(await next()).toBe("made");
      const during = memoryStats();
      expect([during.liveTensors - before.liveTensors, during.liveBytes - before.liveBytes]).toEqual([3, 3 * 1024]);
      w.postMessage("dispose");
      expect(await next()).toBe("disposed");
      expect(memoryStats()).toEqual(before);
    } finally {
      await w.terminate();
    }
  });
});

describe("20 000 steps of small tensors leave no live tensor behind", () => {
  const run = (mode: string): { afterWarmup: Snapshot; afterLoop: Snapshot; end: Snapshot; peak: number } => {
    const r = spawnSync(process.execPath, ["--expose-gc", fixture, DIST, mode, "20000"], { encoding: "utf8" });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    const m = JSON.parse(r.stdout);
    const mib = (b: number): string => (b / 2 ** 20).toFixed(1);
    console.log(
      `memory (${mode}): live tensors after the loop ${m.afterLoop.liveTensors - m.afterWarmup.liveTensors}, after collection ${m.end.liveTensors - m.afterWarmup.liveTensors}; ` +
        `RSS growth ${mib(m.end.rss - m.afterWarmup.rss)} MiB, peak over warm-up ${mib(m.peak - m.afterWarmup.rss)} MiB`,
    );
    return m;
  };
  const rssWithinBound = (m: { afterWarmup: Snapshot; end: Snapshot; peak: number }): void => {
    expect(m.end.rss - m.afterWarmup.rss).toBeLessThan(RSS_BOUND);
    expect(m.peak - m.afterWarmup.rss).toBeLessThan(RSS_BOUND);
  };

  itDist(
    "with dispose(): none left even before the collector runs",
    () => {
      const m = run("dispose");
      expect([m.afterLoop.liveTensors, m.afterLoop.liveBytes]).toEqual([m.afterWarmup.liveTensors, m.afterWarmup.liveBytes]);
      expect([m.end.liveTensors, m.end.liveBytes]).toEqual([m.afterWarmup.liveTensors, m.afterWarmup.liveBytes]);
      rssWithinBound(m);
    },
    60_000,
  );

  itDist(
    "left to the garbage collector: none left after collections",
    () => {
      const m = run("gc");
      // Without dispose() the loop's tensors wait for a collection: proof that the count sees them.
      expect(m.afterLoop.liveTensors).toBeGreaterThan(m.afterWarmup.liveTensors);
      expect([m.end.liveTensors, m.end.liveBytes]).toEqual([m.afterWarmup.liveTensors, m.afterWarmup.liveBytes]);
      rssWithinBound(m);
    },
    60_000,
  );
});
