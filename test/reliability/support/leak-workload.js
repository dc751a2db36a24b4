// A native-heavy workload for leak checks: forward/backward/optimizer/dispose cycles, LoRA
// injection/merge/unmerge/unload cycles, async merges, safetensors round trips and bad calls that
// throw from native code. Yields to the event loop between chunks (N-API finalizers only run on
// loop turns) and prints, after warm-up and at the end, the live native tensors (count and bytes,
// from memoryStats) and RSS as JSON.
// Run as: node --expose-gc leak-workload.js <dist index.js> <cycles>
"use strict";
const fs = require("fs");
const os = require("os");
const path = require("path");
const t = require(process.argv[2]);
const cycles = Number(process.argv[3] ?? 2000);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tl-leak-"));

class Net extends t.nn.Module {
  constructor() {
    super();
    this.emb = new t.nn.Embedding(32, 16, { paddingIdx: 0 });
    this.fc = new t.nn.Linear(16, 32);
    this.head = new t.nn.Linear(32, 32);
  }
  forward(ids) {
    return this.head.forward(this.fc.forward(this.emb.forward(ids)).gelu());
  }
}

const ids = t.tensor([1, 4, 9, 16, 25, 31], { dtype: "int64" });
const target = t.tensor([2, 3, 5, 7, 11, 13], { dtype: "int64" });

function trainCycle(m, opt) {
  const logits = m.forward(ids);
  const loss = t.crossEntropy(logits, target);
  opt.zeroGrad();
  loss.backward();
  t.optim.clipGradNorm(m.trainableParameters(), 1);
  opt.step();
  logits.dispose();
  loss.dispose();
}

function badCalls() {
  const calls = [
    () => t.zeros([2, 3]).matmul(t.zeros([4, 3])),
    () => t.crossEntropy(t.zeros([2, 3]), t.tensor([0, 9], { dtype: "int64" })),
    () => new t.nn.Embedding(4, 2).forward(t.tensor([7], { dtype: "int64" })),
    () => t.empty([1e6, 1e6, 1e6]),
    () => t.init.orthogonal_(t.zeros([0, 4])),
  ];
  for (const c of calls) {
    try {
      c();
    } catch {
      // expected: each throws from native code
    }
  }
}

async function injectCycle(i) {
  const m = t.lora.injectAdapter(new Net(), { targetModules: ["emb", "fc", "head"], r: 4 });
  m.addAdapter("second", { targetModules: ["fc"], r: 2 });
  const opt = new t.optim.AdamW(m.trainableParameters(), { lr: 1e-3 });
  trainCycle(m, opt);
  if (i % 2) await m.mergeAsync({ safe: true });
  else m.merge();
  m.unmerge();
  m.deleteAdapter("second");
  if (i % 10 === 0) {
    const f = path.join(dir, "sd.safetensors");
    t.io.saveStateDictSync(f, m.model.stateDict());
    const loaded = t.io.loadStateDictFileSync(f);
    m.model.loadStateDict(loaded);
  }
  return i % 3 ? m.unload() : m.mergeAndUnload();
}

const turn = () => new Promise((r) => setImmediate(r));
async function settle() {
  for (let i = 0; i < 4; i++) {
    if (global.gc) global.gc();
    await turn();
  }
  return { rss: process.memoryUsage().rss, ...t.memoryStats() };
}

async function main() {
  const model = t.lora.injectAdapter(new Net(), { targetModules: ["fc", "head"], r: 4 });
  const opt = new t.optim.AdamW(model.trainableParameters(), { lr: 1e-3 });
  const run = async (n) => {
    for (let i = 0; i < n; i++) {
      trainCycle(model, opt);
      if (i % 4 === 0) await injectCycle(i);
      if (i % 8 === 0) badCalls();
      if (i % 200 === 199) await turn();
    }
  };
  await run(Math.max(1, Math.floor(cycles / 5)));
  const warm = await settle();
  const afterWarmup = warm.rss;
  let peak = afterWarmup;
  for (let done = 0; done < cycles; done += 200) {
    await run(Math.min(200, cycles - done));
    peak = Math.max(peak, process.memoryUsage().rss);
  }
  const last = await settle();
  const end = last.rss;
  fs.rmSync(dir, { recursive: true, force: true });
  const live = { tensors: last.liveTensors - warm.liveTensors, bytes: last.liveBytes - warm.liveBytes, atWarmup: warm.liveTensors };
  console.log(JSON.stringify({ cycles, afterWarmup, peak, end, growth: end - afterWarmup, live }));
}
main();
