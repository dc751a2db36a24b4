/**
 * Threads: the addon loads and works in several worker_threads at once; concurrent async merges
 * on different models give the same bits as sequential ones; an async merge in flight makes
 * conflicting calls on the same model fail with a StateError instead of racing.
 */
import * as path from "path";
import { Worker } from "worker_threads";
import { StateError, tensor } from "../../lib";
import * as lib from "../../lib";
import { DIST, itDist } from "./support/child";

// The workload is plain JS so that worker threads can run it against dist/ without ts-jest.
const workload = require("./support/workload") as {
  build(t: typeof lib, seed: number): lib.lora.LoraModel;
  digest(m: lib.lora.LoraModel): string;
  trainAndMerge(t: typeof lib, seed: number, asyncMerge: boolean): Promise<{ trained: string; merged: string; loss: number }>;
};

function runWorker(seed: number, asyncMerge: boolean): Promise<{ ok: boolean; trained: string; merged: string; loss: number; error?: string; grad: boolean }> {
  return new Promise((resolve, reject) => {
    const w = new Worker(path.join(__dirname, "support/thread-worker.js"), { workerData: { dist: DIST, seed, asyncMerge } });
    w.once("message", resolve);
    w.once("error", reject);
    w.once("exit", (code) => code !== 0 && reject(new Error(`worker exited with ${code}`)));
  });
}

itDist(
  "four worker threads each train a LoRA step and merge; results equal the main thread's, bit for bit",
  async () => {
    const seeds = [1, 2, 3, 4];
    const results = await Promise.all(seeds.map((s, i) => runWorker(s, i % 2 === 0)));
    for (const [i, r] of results.entries()) {
      expect(r.error).toBeUndefined();
      expect(r.ok).toBe(true);
      expect(r.grad).toBe(true); // grad mode is per thread and was restored
      const here = await workload.trainAndMerge(lib, seeds[i], false);
      expect(r).toEqual({ ok: true, grad: true, ...here });
      expect(r.trained).not.toBe(r.merged); // the merge moved the weights
    }
    // Different seeds, different models: the comparison above is not trivially true.
    expect(new Set(results.map((r) => r.merged)).size).toBe(seeds.length);
  },
  60_000,
);

it("concurrent async merges on different models are bit-identical to sequential merges", async () => {
  const seeds = [10, 11, 12, 13, 14, 15];
  const sequential = seeds.map((s) => {
    const m = workload.build(lib, s);
    m.merge();
    return workload.digest(m);
  });
  const models = seeds.map((s) => workload.build(lib, s));
  const untouched = models.map((m) => workload.digest(m));
  await Promise.all(models.map((m) => m.mergeAsync()));
  expect(models.map((m) => workload.digest(m))).toEqual(sequential);
  expect(untouched).not.toEqual(sequential);
  // And the async unmerges restore every model exactly.
  await Promise.all(models.map((m) => m.unmergeAsync()));
  expect(models.map((m) => workload.digest(m))).toEqual(untouched);
});

describe("an async merge in flight", () => {
  const conflicting: [string, (m: lib.lora.LoraModel) => unknown][] = [
    ["merge", (m) => m.merge()],
    ["unmerge", (m) => m.unmerge()],
    ["forward", (m) => m.forward(tensor([1, 2], { dtype: "int64" }))],
    ["addAdapter", (m) => m.addAdapter("second", { targetModules: ["fc"] })],
    ["setAdapter", (m) => m.setAdapter("default")],
    ["deleteAdapter", (m) => m.deleteAdapter("default")],
    ["disableAdapters", (m) => m.disableAdapters()],
    ["enableAdapters", (m) => m.enableAdapters()],
    ["unload", (m) => m.unload()],
    ["mergeAndUnload", (m) => m.mergeAndUnload()],
  ];

  // The operation the message names: unload unmerges first, mergeAndUnload merges first.
  const refusedAs: Record<string, string> = { unload: "unmerge", mergeAndUnload: "merge" };

  it.each(conflicting)("makes %s fail with a StateError; the merge completes correctly, and then the call works", async (name, call) => {
    const reference = workload.build(lib, 99);
    reference.merge();
    const m = workload.build(lib, 99);
    const before = workload.digest(m);
    const pending = m.mergeAsync();
    expect(() => call(m)).toThrow(StateError);
    expect(() => call(m)).toThrow(new RegExp(`^${refusedAs[name] ?? name}: an async merge is in flight on this layer; await it first$`));
    await pending;
    expect(workload.digest(m)).toBe(workload.digest(reference));
    // Idle again: unmerge restores the base, and the refused call now goes through.
    m.unmerge();
    expect(workload.digest(m)).toBe(before);
    expect(() => call(m)).not.toThrow();
  });

  it("makes a second mergeAsync and unmergeAsync reject with a StateError; later layers are guarded too", async () => {
    const m = workload.build(lib, 5);
    const pending = m.mergeAsync();
    await expect(m.mergeAsync()).rejects.toThrow(StateError);
    await expect(m.unmergeAsync()).rejects.toThrow(StateError);
    // After a few turns of the event loop a later layer is the busy one: still refused.
    await new Promise((r) => setImmediate(r));
    let refused = 0;
    for (let i = 0; i < 3; i++) {
      try {
        m.merge();
      } catch (e) {
        if (e instanceof StateError) refused++;
      }
      await new Promise((r) => setImmediate(r));
    }
    await pending;
    expect(refused).toBeGreaterThan(0);
    expect(m.loraLayers().every(([, l]) => l.mergedAdapters.join() === "default")).toBe(true);
  });
});
