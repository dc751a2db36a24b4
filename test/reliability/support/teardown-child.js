// Child process of worker-teardown.test.ts: worker threads doing async merges, unmerges, saves
// and loads are terminated, or call process.exit(), while that work is in flight; at the end the
// main thread itself exits with async merges, an unmerge, a save and a load in flight. The
// parent checks that this process exits normally: a completion callback running during teardown
// must never abort it.
// Prints one JSON line. Arguments: <dist index.js> <workers> <seed>
"use strict";
const fs = require("fs");
const os = require("os");
const path = require("path");
const { Worker } = require("worker_threads");
const dist = process.argv[2];
const total = Number(process.argv[3]);
let seed = Number(process.argv[4]) >>> 0 || 1;
const random = () => (seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "tl-teardown-"));

/** One worker's life: busy with async work, then gone mid-flight; resolves with how it ended. */
function one(id) {
  const exitByItself = random() < 0.5;
  const delayMs = Math.floor(random() * 25);
  const w = new Worker(path.join(__dirname, "teardown-worker.js"), { workerData: { dist, id, tmp, exitAfterMs: exitByItself ? delayMs : null } });
  return new Promise((resolve, reject) => {
    w.once("error", reject);
    w.once("exit", (code) => resolve(exitByItself ? "exit" : `terminated:${code}`));
    w.once("message", () => {
      if (!exitByItself) setTimeout(() => w.terminate(), delayMs);
    });
  });
}

(async () => {
  const ended = { exit: 0, terminated: 0 };
  for (let i = 0; i < total; i += 4) {
    const batch = await Promise.all([0, 1, 2, 3].filter((k) => i + k < total).map((k) => one(i + k)));
    for (const how of batch) ended[how === "exit" ? "exit" : "terminated"]++;
  }
  fs.rmSync(tmp, { recursive: true, force: true });
  console.log(JSON.stringify({ workers: total, ...ended }));
  // The main thread too: exit with merges still running on the thread pool.
  const t = require(dist);
  class Net extends t.nn.Module {
    constructor() {
      super();
      this.fc = new t.nn.Linear(512, 512);
    }
  }
  const models = [0, 1, 2, 3].map(() => t.lora.injectAdapter(new Net(), { targetModules: ["fc"], r: 8 }));
  await models[3].mergeAsync();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tl-teardown-main-"));
  models[2].saveAdapter(dir);
  models.slice(0, 2).forEach((m) => m.mergeAsync());
  models[3].unmergeAsync();
  models[2].saveAdapterAsync(dir);
  t.lora.loadAdapterAsync(new Net(), dir);
  process.on("exit", () => fs.rmSync(dir, { recursive: true, force: true }));
  process.exit(0);
})().catch((e) => {
  console.error(e);
  process.exit(3);
});
