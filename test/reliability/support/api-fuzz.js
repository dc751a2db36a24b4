// Child process of api-fuzz.test.ts: random sequences of API calls, with valid and invalid
// arguments, against two LoRA-injected models (one with its output head tied to the embedding,
// GPT-2 style), switching between them. Runs with plain `node` against dist/ so that an abort or
// segfault shows up as the exit status. Invariants:
// - after every call that throws, the thrown value is an Error and the model's parameter bytes
//   and adapter state are exactly as before;
// - after every call that succeeds, every base parameter not under a merge holds its pristine
//   bytes (so unmerge, disable, unload... restore the base bit for bit), and forward equals the
//   adapter formula computed from the pristine weights (merged and active adapters, none when
//   disabled) by plain tensor ops;
// - withAdaptersDisabled(fn), nested and with state changes tried inside fn, gives the base
//   output inside, refuses every state change there with a StateError, and ends with the state
//   exactly as before.
// Prints one JSON line: {calls, threw, failures, ...}.
// Arguments: <dist index.js> <seed> <budget ms>
"use strict";
const crypto = require("crypto");
const fc = require("fast-check");
const t = require(process.argv[2]);
const seed = Number(process.argv[3]);
const budgetMs = Number(process.argv[4]);

class Net extends t.nn.Module {
  /** `tied`: the head holds the embedding's weight tensor, as GPT-2's lm_head does. */
  constructor(tied) {
    super();
    this.emb = new t.nn.Embedding(11, 6, { paddingIdx: 0 });
    this.l1 = new t.nn.Linear(6, 8);
    this.l2 = new t.nn.Conv1D(8, 8); // GPT-2 layout: fanInFanOut
    this.l3 = new t.nn.Linear(8, 8, { bias: false });
    this.proj = new t.nn.Linear(8, 6);
    this.head = new t.nn.Linear(6, 11, { bias: false });
    if (tied) this.head.weight = this.emb.weight;
  }
  forward(ids) {
    let h = this.emb.forward(ids);
    for (const m of [this.l1, this.l2, this.l3]) h = m.forward(h).relu();
    return this.head.forward(this.proj.forward(h));
  }
}

t.manualSeed(seed >>> 0);
const TARGETS = { targetModules: ["emb", "l1", "l2", "l3"], r: 2, loraAlpha: 4 };
/** Per model: the LoraModel, its optimizer, and a copy of every base parameter taken while unmerged. */
const models = [false, true].map((tied) => {
  const lm = t.lora.injectAdapter(new Net(tied), TARGETS);
  // Non-zero B factors, so every adapter changes the output from the start.
  for (const [, l] of lm.loraLayers()) t.noGrad(() => t.init.normal_(l.factors("default")[1], 0, 0.3));
  return { tied, lora: lm, optimizer: new t.optim.AdamW(lm.trainableParameters(), { lr: 1e-2 }), pristine: new Map() };
});
let current = models[0];
let lora = current.lora;
let optimizer = current.optimizer;

/** The adapters' factor tensors (everything else is a base parameter). */
function factorSet(lm) {
  const set = new Set();
  for (const [, l] of lm.loraLayers()) for (const n of l.adapterNames) for (const f of l.factors(n)) set.add(f);
  return set;
}
/** Every base parameter with the paths that hold it (a tied tensor has two). */
function baseParameters(lm) {
  const factors = factorSet(lm);
  const out = new Map();
  for (const [path, m] of lm.model.namedModules()) {
    for (const [name, p] of m.ownParameters()) {
      if (factors.has(p)) continue;
      if (!out.has(p)) out.set(p, []);
      out.get(p).push(path ? `${path}.${name}` : name);
    }
  }
  return out;
}
/** Records the current base parameters as pristine (at the start, and after a successful loadStateDict). */
function recordPristine(model) {
  for (const [p] of baseParameters(model.lora)) {
    model.pristine.get(p)?.dispose();
    model.pristine.set(p, p.detach().clone());
  }
}
models.forEach(recordPristine);

/** Parameter bytes (names, dtypes, shapes, values) and adapter bookkeeping, as one digest. */
function checksum() {
  const h = crypto.createHash("sha256");
  for (const [name, p] of lora.model.namedParameters()) {
    h.update(`${name}|${p.dtype}|${p.shape.join("x")}|${p.requiresGrad}|`);
    h.update(p.toBytes());
  }
  h.update(JSON.stringify([lora.adapterNames, lora.activeAdapters]));
  for (const [path, layer] of lora.loraLayers()) {
    h.update(JSON.stringify([path, layer.adapterNames, layer.activeAdapters, layer.mergedAdapters, layer.disabled]));
  }
  return h.digest("hex");
}

// ---- argument pools: valid values mixed with wrong types, shapes, dtypes, NaN, disposed tensors
const disposed = () => {
  const x = t.zeros([2, 6]);
  x.dispose();
  return x;
};
const ids = (list, dtype = "int64") => t.tensor(list, { dtype });
const TENSORS = [
  () => ids([1, 2, 3]),
  () =>
    ids([
      [1, 0],
      [4, 10],
    ]),
  () => ids([0, 11]), // out of range
  () => ids([-1]), // negative id
  () => ids([1, 2], "int32"),
  () => t.tensor([1.5, 2]), // float ids
  () => t.randn([2, 6]),
  () => t.randn([3, 8]),
  () => t.randn([3, 7]), // wrong in-features
  () => t.randn([2, 6], { dtype: "float64" }),
  () => t.zeros([0, 6]),
  () => t.tensor(NaN),
  () => ids([]),
  disposed,
  () => 42,
  () => "ids",
  () => null,
  () => undefined,
  () => ({}),
  () => [1, 2],
];
const NUMBERS = [0, 1, -1, 0.5, 2, NaN, Infinity, -Infinity, 1e300, 2 ** 53, "1", null, undefined, true];
const NAMES = ["default", "other", "third", "", "a.b", 5, null, undefined, ["default"], ["default", "other"], ["nope"], [], {}];
const CONFIGS = [
  { targetModules: ["l1", "l3"], r: 1 },
  { targetModules: ["emb"], r: 3, loraAlpha: 2, embeddingInit: "b-normal" },
  { targetModules: "l[0-9]", r: 2, useRslora: true, initLoraWeights: "gaussian" },
  { targetModules: ["head"], r: 2 }, // a new layer becomes LoRA
  { targetModules: ["nothing"] },
  { targetModules: ["l1"], r: 0 },
  { targetModules: ["l1"], r: NaN },
  { targetModules: ["l1"], loraAlpha: NaN },
  { targetModules: ["l1"], loraDropout: 1 },
  { targetModules: ["l1"], rankPattern: { l1: -2 } },
  { targetModules: "(" },
  { targetModules: ["l1"], bias: "all" },
  { targetModules: ["l1"], unknownField: 1 },
  { r: 2 },
  null,
  "l1",
];
const MODULES = [() => new t.nn.Linear(6, 8), () => new t.nn.Embedding(4, 2), () => ({ forward() {} }), () => null, () => t.zeros([2])];

// ---- the adapter formula, from the pristine weights, with plain tensor ops
const PROBE = [
  [1, 2, 3],
  [4, 0, 10],
];
const LoraLayer = t.lora.LoraLayer;

/** One layer of Net by the formula: base output with pristine weights, plus s·(x Aᵀ) Bᵀ per contributing adapter. */
function referenceLayer(module, x, kind, withAdapters) {
  const isLora = module instanceof LoraLayer;
  const base = isLora ? module.base_layer : module;
  const W = current.pristine.get(base.weight) ?? base.weight;
  let y;
  if (kind === "embedding") y = W.indexSelect(0, x.reshape([-1])).reshape([...x.shape, W.shape[1]]);
  else if (base instanceof t.nn.Conv1D) y = x.matmul(W);
  else y = x.matmul(W.t());
  if (base.bias) y = y.add(current.pristine.get(base.bias) ?? base.bias);
  if (!isLora || !withAdapters || module.disabled) return y;
  for (const n of new Set([...module.mergedAdapters, ...module.activeAdapters])) {
    const [A, B] = module.factors(n).map((f) => f.detach());
    const s = module.settings(n).scale;
    const low =
      kind === "embedding"
        ? A.t()
            .indexSelect(0, x.reshape([-1]))
            .reshape([...x.shape, A.shape[0]])
        : x.matmul(A.t());
    y = y.add(low.matmul(B.t()).mul(s));
  }
  return y;
}
function referenceForward(ids, withAdapters) {
  const m = lora.model;
  let h = referenceLayer(m.emb, ids, "embedding", withAdapters);
  for (const l of [m.l1, m.l2, m.l3]) h = referenceLayer(l, h, "linear", withAdapters).relu();
  return referenceLayer(m.head, referenceLayer(m.proj, h, "linear", withAdapters), "linear", withAdapters);
}
let nonFiniteProbes = 0;
/**
 * Largest |forward − formula| on the probe ids (with adapters, or the base model's output),
 * relative to the output's size: training with huge learning rates makes it large. 0 when the
 * formula itself overflows (nothing to compare; counted).
 */
function formulaError(withAdapters) {
  const ids = t.tensor(PROBE, { dtype: "int64" });
  const got = t.noGrad(() => lora.forward(ids));
  const want = t.noGrad(() => referenceForward(ids, withAdapters));
  const size = want.abs().max().item();
  if (!Number.isFinite(size)) {
    nonFiniteProbes++;
    return 0;
  }
  return got.sub(want).abs().max().item() / (1 + size);
}
let invariantChecks = 0;
/** After a successful call: unmerged base parameters hold their pristine bytes; forward equals the formula. */
function checkInvariants(label) {
  invariantChecks++;
  if (label === "loadStateDict") recordPristine(current);
  const merged = new Set(
    lora
      .loraLayers()
      .filter(([, l]) => l.merged)
      .map(([, l]) => l.base_layer.weight),
  );
  for (const [p, paths] of baseParameters(lora)) {
    if (merged.has(p)) continue;
    const pristine = current.pristine.get(p);
    if (!pristine) {
      current.pristine.set(p, p.detach().clone());
      continue;
    }
    if (!p.toBytes().equals(pristine.toBytes()))
      failures.push({ label, problem: `${paths.join(" = ")} is not merged but differs from its pristine bytes`, tied: current.tied });
  }
  const err = formulaError(true);
  if (!(err < 1e-4)) failures.push({ label, problem: `forward differs from the adapter formula by ${err}`, tied: current.tied });
}

const pick = (pool) => fc.nat(pool.length - 1).map((i) => pool[i]);

// ---- calls tried inside withAdaptersDisabled(fn): each state change must be refused there
const INSIDE = [
  ["merge", () => lora.merge()],
  ["merge(other)", () => lora.merge({ adapterNames: lora.adapterNames.slice(-1) })],
  ["unmerge", () => lora.unmerge()],
  ["mergeAsync", () => lora.mergeAsync()],
  ["unmergeAsync", () => lora.unmergeAsync()],
  ["addAdapter", () => lora.addAdapter("inner", { targetModules: ["l1"], r: 1 })],
  ["deleteAdapter", () => lora.deleteAdapter(lora.adapterNames[0])],
  ["setAdapter", () => lora.setAdapter(lora.adapterNames)],
  ["disableAdapters", () => lora.disableAdapters()],
  ["enableAdapters", () => lora.enableAdapters()],
  ["loadStateDict", () => lora.model.loadStateDict(lora.model.stateDict())],
  ["to(float64)", () => lora.to({ dtype: "float64" })],
  ["mergeAndUnload", () => lora.mergeAndUnload()],
  ["unload", () => lora.unload()],
];
const pendingInside = [];
let refusedInside = 0;
let nestedScopes = 0;

/** withAdaptersDisabled nested `depth` levels deep, trying the `inner` calls at the innermost level. */
function disabledScope(inner, depth) {
  const before = checksum();
  const run = (level) => {
    const err = formulaError(false);
    if (!(err < 1e-4)) failures.push({ label: "withAdaptersDisabled", problem: `forward inside differs from the base model by ${err}`, level });
    if (level < depth) {
      nestedScopes++;
      return lora.withAdaptersDisabled(() => run(level + 1));
    }
    for (const i of inner) {
      const [label, call] = INSIDE[i];
      const stateBefore = checksum();
      let result;
      try {
        result = call();
      } catch (e) {
        // With every adapter deleted, a call that needs a name fails its argument check first.
        if (e instanceof t.StateError) refusedInside++;
        else if (lora.adapterNames.length === 0 && /adapterName/.test(e.message)) refusedInside++;
        else
          failures.push({
            label: `inside withAdaptersDisabled: ${label}`,
            problem: "threw something other than a StateError",
            message: String(e && e.message),
          });
        if (checksum() !== stateBefore) failures.push({ label: `inside withAdaptersDisabled: ${label}`, problem: "a refused call changed the state" });
        continue;
      }
      if (result && typeof result.then === "function") {
        pendingInside.push(
          result.then(
            () => failures.push({ label: `inside withAdaptersDisabled: ${label}`, problem: "an async state change was allowed" }),
            (e) =>
              e instanceof t.StateError
                ? refusedInside++
                : failures.push({ label: `inside withAdaptersDisabled: ${label}`, problem: "rejected with something other than a StateError" }),
          ),
        );
        if (checksum() !== stateBefore)
          failures.push({ label: `inside withAdaptersDisabled: ${label}`, problem: "an async call changed the state before settling" });
      } else {
        failures.push({ label: `inside withAdaptersDisabled: ${label}`, problem: "a state change was allowed" });
      }
    }
  };
  try {
    lora.withAdaptersDisabled(() => run(0));
  } catch (e) {
    failures.push({ label: "withAdaptersDisabled(nested)", problem: "the call threw", message: String(e && e.message).slice(0, 200) });
  }
  if (checksum() !== before) failures.push({ label: "withAdaptersDisabled(nested)", problem: "the state after differs from the state before" });
}
const tensorArg = pick(TENSORS);
const num = pick(NUMBERS);
const name = pick(NAMES);

// Each action is [label, fn]; fn gets freshly built arguments.
const ACTIONS = fc.oneof(
  fc.tuple(tensorArg).map(([a]) => ["forward", () => lora.forward(a())]),
  fc.tuple(tensorArg, fc.boolean()).map(([a, train]) => [
    "trainStep",
    () => {
      lora.train(train);
      const x = a();
      const logits = lora.forward(x);
      const target = t.tensor(
        Array.from({ length: logits.shape.slice(0, -1).reduce((p, d) => p * d, 1) }, (_, i) => i % 11),
        { dtype: "int64" },
      );
      const loss = t.crossEntropy(logits.reshape([-1, 11]), target);
      optimizer.zeroGrad();
      loss.backward();
      optimizer.step();
    },
  ]),
  fc.tuple(num).map(([lr]) => [
    "optimizer.lr",
    () => {
      optimizer.lr = lr;
    },
  ]),
  fc.tuple(num).map(([lr]) => [
    "new AdamW",
    () => {
      optimizer = new t.optim.AdamW(lora.trainableParameters(), { lr, weightDecay: lr });
    },
  ]),
  fc.tuple(fc.boolean(), name).map(([safe, n]) => ["merge", () => lora.merge(n === undefined ? { safe } : { safe, adapterNames: n })]),
  fc.tuple(num, name).map(([safe, n]) => ["merge(bad safe)", () => lora.merge({ safe, adapterNames: Array.isArray(n) ? n : undefined })]),
  fc.constant(["unmerge", () => lora.unmerge()]),
  fc.tuple(name, pick(CONFIGS)).map(([n, c]) => ["addAdapter", () => lora.addAdapter(n, c)]),
  fc.tuple(name).map(([n]) => ["setAdapter", () => lora.setAdapter(n)]),
  fc.tuple(name).map(([n]) => ["deleteAdapter", () => lora.deleteAdapter(n)]),
  fc.constant(["disableAdapters", () => lora.disableAdapters()]),
  fc.constant(["enableAdapters", () => lora.enableAdapters()]),
  // The loop unmerges first: disabling unmerges and enabling does not merge back (as in PEFT),
  // so around a merged model the call changes the weights even when it succeeds.
  fc.tuple(tensorArg).map(([a]) => ["withAdaptersDisabled", () => lora.withAdaptersDisabled(() => lora.forward(a()))]),
  fc
    .tuple(fc.array(fc.nat(INSIDE.length - 1), { maxLength: 4 }), fc.nat(2))
    .map(([inner, depth]) => ["withAdaptersDisabled(nested, state changes inside)", () => disabledScope(inner, depth)]),
  fc.constant([
    "switch model (tied ⇄ untied)",
    () => {
      current = models[current === models[0] ? 1 : 0];
      lora = current.lora;
      optimizer = current.optimizer;
    },
  ]),
  fc.tuple(pick(MODULES), pick(CONFIGS)).map(([m, c]) => ["injectAdapter(other)", () => t.lora.injectAdapter(m(), c)]),
  fc.tuple(pick(CONFIGS), name).map(([c, n]) => ["injectAdapter(same)", () => t.lora.injectAdapter(lora.model, c, n)]),
  fc.tuple(num, num, tensorArg).map(([a, b, x]) => [
    "init",
    () => {
      const target = x();
      if (target instanceof t.Tensor && !target.isDisposed && target.ndim >= 1) t.init.uniform_(target, a, b);
      else t.init.normal_(target, a, b);
    },
  ]),
  fc.tuple(tensorArg, tensorArg, num).map(([a, b, n]) => [
    "ops",
    () => {
      const x = a(),
        y = b();
      [
        () => x.add(y),
        () => x.matmul(y),
        () => x.mul(n),
        () => x.reshape([n, -1]),
        () => x.softmax(n),
        () => t.cat([x, y], n),
        () => x.sum(n),
        () => x.narrow(0, n, 1),
        () => t.mseLoss(x, y),
        () => x.dropout(n),
      ][Math.abs(Number(n) | 0) % 10]();
    },
  ]),
  fc.tuple(tensorArg, num).map(([a, n]) => ["factory", () => [t.zeros, t.ones, t.rand][Math.abs(Number(n) | 0) % 3]([n, 2], { dtype: a() })]),
  fc.tuple(tensorArg).map(([a]) => [
    "loadStateDict",
    () => {
      const sd = lora.model.stateDict();
      const keys = Object.keys(sd);
      sd[keys[keys.length >> 1]] = a(); // one entry replaced by a random value
      lora.model.loadStateDict(sd);
    },
  ]),
  fc.tuple(tensorArg).map(([a]) => ["clipGradNorm", () => t.optim.clipGradNorm([a()], 1)]),
  fc.tuple(num).map(([n]) => [
    "optimizer step (grads absent)",
    () => {
      optimizer.zeroGrad();
      optimizer.step(n);
    },
  ]),
);

const started = Date.now();
let calls = 0,
  threw = 0,
  batches = 0,
  tiedRefusals = 0;
const failures = [];
const byAction = {};
const rng = fc.sample(fc.array(ACTIONS, { minLength: 50, maxLength: 50 }), { seed, numRuns: 1000 });
outer: for (const batch of rng) {
  batches++;
  for (const [label, fn] of batch) {
    if (Date.now() - started > budgetMs) break outer;
    const before = checksum();
    calls++;
    byAction[label] ??= [0, 0];
    byAction[label][0]++;
    try {
      fn();
    } catch (e) {
      threw++;
      byAction[label][1]++;
      if (!(e instanceof Error) || typeof e.message !== "string" || e.message.length === 0) failures.push({ label, problem: "not an Error", value: String(e) });
      else if (checksum() !== before) failures.push({ label, problem: "state changed by a failed call", message: e.message.slice(0, 200) });
      if (e instanceof t.StateError && /is tied to/.test(e.message)) tiedRefusals++;
      continue;
    }
    if (label.startsWith("withAdaptersDisabled") && checksum() !== before) failures.push({ label, problem: "withAdaptersDisabled changed the state" });
    try {
      checkInvariants(label);
    } catch (e) {
      failures.push({ label, problem: "the model cannot be checked after a successful call", message: String(e && e.message).slice(0, 200) });
    }
  }
}
(async () => {
  await Promise.all(pendingInside);
  // Both models must still be usable, and unmerge must give back the pristine base, bit for bit.
  let out;
  for (const m of models) {
    current = m;
    lora = m.lora;
    if (lora.adapterNames.length > 0) lora.setAdapter(lora.adapterNames[0]);
    lora.enableAdapters();
    lora.unmerge();
    checkInvariants("final unmerge");
    out = lora.forward(t.tensor([1, 2, 3], { dtype: "int64" }));
  }
  const failureLabels = failures.reduce((m, f) => ((m[f.label] = (m[f.label] ?? 0) + 1), m), {});
  console.log(
    JSON.stringify({
      seed,
      calls,
      threw,
      batches,
      failures: failures.slice(0, 10),
      failureLabels,
      failureCount: failures.length,
      finalShape: out.shape,
      byAction,
      invariantChecks,
      refusedInside,
      nestedScopes,
      tiedRefusals,
      nonFiniteProbes,
    }),
  );
})();
