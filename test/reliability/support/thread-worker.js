// worker_threads entry: loads the addon in this thread's own context and runs the workload.
"use strict";
const { parentPort, workerData } = require("worker_threads");
const t = require(workerData.dist);
const { trainAndMerge } = require("./workload");

trainAndMerge(t, workerData.seed, workerData.asyncMerge).then(
  (r) => parentPort.postMessage({ ok: true, ...r, grad: t.isGradEnabled() }),
  (e) => parentPort.postMessage({ ok: false, error: String(e && e.stack) }),
);
