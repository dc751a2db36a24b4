// A small, fully deterministic LoRA workload shared by the thread tests: every parameter is
// filled from a JS generator (not libtorch's global RNG, which threads would share), then one
// training step and one merge run. Returns a SHA-256 of every parameter's bytes afterwards.
"use strict";
const crypto = require("crypto");

/** A tiny linear congruential generator: the same seed gives the same values on any thread. */
function lcg(seed) {
  let s = seed >>> 0 || 1;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32) * 2 - 1;
}

function build(t, seed) {
  class Net extends t.nn.Module {
    constructor() {
      super();
      this.emb = new t.nn.Embedding(16, 8);
      this.fc = new t.nn.Linear(8, 12);
      this.head = new t.nn.Linear(12, 16);
    }
    forward(ids) {
      return this.head.forward(this.fc.forward(this.emb.forward(ids)).relu());
    }
  }
  const m = t.lora.injectAdapter(new Net(), { targetModules: ["emb", "fc", "head"], r: 4, loraAlpha: 8 });
  const next = lcg(seed);
  const state = {};
  for (const [name, p] of m.model.namedParameters()) state[name] = t.tensor(Float32Array.from({ length: p.numel }, next), { shape: p.shape });
  m.model.loadStateDict(state);
  return m;
}

function digest(m) {
  const h = crypto.createHash("sha256");
  for (const [name, p] of m.model.namedParameters()) h.update(name).update(p.toBytes());
  return h.digest("hex");
}

/** One AdamW step on a fixed batch, then a merge (sync or async). */
async function trainAndMerge(t, seed, asyncMerge) {
  const m = build(t, seed);
  const opt = new t.optim.AdamW(m.trainableParameters(), { lr: 1e-2 });
  const ids = t.tensor([1, 5, 9, 3], { dtype: "int64" });
  const loss = t.crossEntropy(m.forward(ids), t.tensor([2, 7, 0, 15], { dtype: "int64" }));
  opt.zeroGrad();
  loss.backward();
  opt.step();
  const trained = digest(m);
  if (asyncMerge) await m.mergeAsync({ safe: true });
  else m.merge({ safe: true });
  return { trained, merged: digest(m), loss: loss.item() };
}

module.exports = { build, digest, trainAndMerge };
