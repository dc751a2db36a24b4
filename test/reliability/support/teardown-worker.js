// worker_threads entry of teardown-child.js: starts every kind of async work at once (merge,
// unmerge, adapter save and load) on a model large enough that the work is still in flight when
// this thread goes away, either by process.exit() here or by worker.terminate() in the parent.
"use strict";
const fs = require("fs");
const path = require("path");
const { parentPort, workerData } = require("worker_threads");
const t = require(workerData.dist);

class Net extends t.nn.Module {
  constructor() {
    super();
    this.emb = new t.nn.Embedding(512, 128);
    this.fc = new t.nn.Linear(256, 256);
    this.out = new t.nn.Linear(256, 384);
  }
  forward(x) {
    return this.out.forward(this.fc.forward(x));
  }
}

const model = t.lora.injectAdapter(new Net(), { targetModules: ["emb", "fc", "out"], r: 8, loraAlpha: 16 });
const other = t.lora.injectAdapter(new Net(), { targetModules: ["emb", "fc", "out"], r: 8, loraAlpha: 16 });
const dir = path.join(workerData.tmp, `w${workerData.id}`);
fs.mkdirSync(dir, { recursive: true });
other.saveAdapter(dir);
const ignore = () => undefined;
// Each chain keeps async work going until the thread dies; failures (a state conflict) are fine.
(async () => {
  for (;;) {
    await model.mergeAsync().catch(ignore);
    await model.unmergeAsync().catch(ignore);
  }
})();
(async () => {
  for (let i = 0; ; i++) {
    await other.saveAdapterAsync(dir).catch(ignore);
    await t.lora.loadAdapterAsync(new Net(), dir).catch(ignore);
  }
})();
const x = t.randn([4, 256]);
(async () => {
  for (;;) {
    other.forward(x).dispose();
    await new Promise((r) => setImmediate(r));
  }
})();
if (workerData.exitAfterMs !== null) setTimeout(() => process.exit(0), workerData.exitAfterMs);
parentPort.postMessage("busy");
