// One rank of the distributed tests, run with plain `node` against the built package (dist/).
// Reads its rendezvous from the environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT, as
// `torch-lora launch` sets them) and its task from TL_TEST (a JSON object):
//   { mode: "collectives" }          hand-checkable collectives; prints their results
//   { mode: "train", steps, ... }    LoRA training of the demo model with DataParallel (worldSize 1: no
//                                     process group, the whole batch: the single-process reference)
//   { mode: "die", atStep }          like train, but rank 1 exits with code 3 before the step's all-reduce
//   { mode: "init", holdMs }         initProcessGroup only (error cases), then holdMs before the barrier
//   { mode: "nccl-collectives" }     NCCL collectives on cuda:LOCAL_RANK
// Prints one JSON line: { ok: true, ... } or { ok: false, name, message }.
"use strict";
const path = require("path");
const root = path.resolve(__dirname, "../../..");
const t = require(path.join(root, "dist/lib"));
const { CharModel } = require(path.join(root, "dist/demo/model"));
const { dist } = t;

const task = JSON.parse(process.env.TL_TEST || "{}");
const rank = Number(process.env.RANK ?? 0);
const worldSize = Number(process.env.WORLD_SIZE ?? 1);
const timeoutMs = task.timeoutMs ?? 20000;
dist.setNumThreads(1); // 2 cores shared by many processes

const values = (x) => Array.from(x.toArray());

async function collectives() {
  const g = await dist.initProcessGroup({ backend: "gloo", timeoutMs });
  const out = {};
  const s = t.tensor([rank + 1, 10 * (rank + 1), -rank]);
  await dist.allReduce(s); // sum
  out.sum = values(s);
  const a = t.tensor([rank + 1, 2 * rank]);
  await dist.allReduce(a, { op: "avg" });
  out.avg = values(a);
  const m = t.tensor([rank, -rank, 5]);
  dist.allReduceSync(m, { op: "max" });
  out.max = values(m);
  const b = t.tensor([rank, rank, rank], { dtype: "float64" });
  await dist.broadcast(b, { src: worldSize - 1 });
  out.broadcast = values(b);
  const outs = Array.from({ length: worldSize }, () => t.zeros([2]));
  await dist.allGather(outs, t.tensor([rank, rank * rank]));
  out.allGather = outs.map(values);
  // inputs[r] on rank k = [k + r, 100 k]: rank r's output is the sum over k.
  const inputs = Array.from({ length: worldSize }, (_, r) => t.tensor([rank + r, 100 * rank]));
  const rs = t.zeros([2]);
  await dist.reduceScatter(rs, inputs);
  out.reduceScatter = values(rs);
  const ints = t.tensor([rank + 1, 7], { dtype: "int64" });
  await dist.allReduce(ints, { op: "product" });
  out.product = values(ints).map(Number);
  await dist.barrier();
  dist.barrierSync();
  out.rank = g.rank;
  out.size = g.size;
  dist.destroyProcessGroup();
  return out;
}

/** NCCL on this local rank's GPU: a sum all-reduce, an avg all-reduce and a broadcast. */
async function ncclCollectives() {
  await dist.initProcessGroup({ backend: "nccl", timeoutMs });
  const device = dist.localDevice();
  const s = t.tensor([rank + 1, 10 * (rank + 1)], { device });
  await dist.allReduce(s);
  const a = t.tensor([rank + 1, 2 * rank], { device });
  await dist.allReduce(a, { op: "avg" });
  const b = t.tensor([rank, rank], { device });
  await dist.broadcast(b, { src: worldSize - 1 });
  dist.destroyProcessGroup();
  return { device, sum: values(s.to("cpu")), avg: values(a.to("cpu")), broadcast: values(b.to("cpu")) };
}

/** The same global batch on every rank: `rows` examples of `context` ids and a target id. */
function globalBatch(step, rows, context, vocab) {
  let s = (1234 + 7919 * step) >>> 0;
  const next = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) % vocab);
  const ids = Array.from({ length: rows * context }, next);
  const targets = Array.from({ length: rows }, next);
  return { ids: t.tensor(ids, { dtype: "int64", shape: [rows, context] }), targets: t.tensor(targets, { dtype: "int64" }) };
}

async function train() {
  const { steps = 3, rowsPerRank = 4, r = 4, dieAt = -1, die = false } = task;
  const totalRows = task.totalRows ?? rowsPerRank * worldSize;
  const distributed = worldSize > 1 || task.forceGroup;
  if (distributed) await dist.initProcessGroup({ backend: "gloo", timeoutMs });
  const opts = { vocab: 11, context: 3, embeddingDim: 6, hidden: 10 };
  t.manualSeed(42); // the same frozen base model everywhere
  const model = new CharModel(opts);
  // A different adapter init per rank: DataParallel must make rank 0's the common start.
  t.manualSeed(1000 + (distributed ? rank : 0));
  const lm = t.lora.injectAdapter(model, { r: task.rankR?.[rank] ?? r, loraAlpha: 8, targetModules: ["emb", "fc1", "fc2"], initLoraWeights: "gaussian" });
  // Non-zero B factors, so that every factor gets a gradient from the first step.
  t.noGrad(() => lm.trainableParameters().forEach((p) => t.init.normal_(p, 0, 0.3)));
  const dp = distributed ? await dist.DataParallel.create(lm, { bucketCapMb: task.bucketCapMb, overlap: task.overlap }) : null;
  const params = lm.trainableParameters();
  const opt = new t.optim.SGD(params, { lr: 0.5 });
  const history = [];
  const snapshot = () => params.map(values);
  history.push(snapshot());
  const timings = [];
  for (let step = 0; step < steps; step++) {
    const { ids, targets } = globalBatch(step, totalRows, opts.context, opts.vocab);
    const start = distributed ? rank * rowsPerRank : 0;
    const rows = distributed ? rowsPerRank : totalRows;
    const t0 = process.hrtime.bigint();
    const loss = t.crossEntropy(lm.forward(ids.narrow(0, start, rows)), targets.narrow(0, start, rows));
    loss.backward();
    const t1 = process.hrtime.bigint();
    if (die && rank === 1 && step === dieAt) process.exit(3);
    if (dp) await dp.syncGradients();
    const t2 = process.hrtime.bigint();
    opt.step();
    opt.zeroGrad();
    timings.push([Number(t1 - t0) / 1e6, Number(t2 - t1) / 1e6]);
    history.push(snapshot());
  }
  if (distributed) dist.destroyProcessGroup();
  return { history, timings, gradientBytes: dp ? dp.gradientBytes : null, buckets: dp ? dp.buckets.length : null };
}

async function initOnly() {
  const g = await dist.initProcessGroup({ backend: task.backend ?? "gloo", timeoutMs, worldSize: task.worldSize?.[rank] });
  // Keeps rank 0's rendezvous store up for late arrivals (a duplicate rank, say).
  if (task.holdMs) await new Promise((resolve) => setTimeout(resolve, task.holdMs));
  await dist.barrier();
  dist.destroyProcessGroup();
  return { size: g.size };
}

const modes = { "nccl-collectives": ncclCollectives, collectives, train, die: train, init: initOnly };
(modes[task.mode] ?? (() => Promise.reject(new Error(`unknown mode ${task.mode}`))))().then(
  (result) => {
    process.stdout.write(JSON.stringify({ ok: true, rank, ...result }) + "\n");
  },
  (err) => {
    process.stdout.write(JSON.stringify({ ok: false, rank, name: err && err.name, message: String(err && err.message) }) + "\n");
  },
);
