// Child process of file-fuzz.test.ts: mutated, truncated and inconsistent files loaded INTO a
// model: (a) state-dict files through loadStateDictFile + Module.loadStateDict, (b) PEFT adapter
// directories through lora.loadAdapter (when the package has it), some with a FIFO, a link to
// one, a folder or a device in place of a file, (c) such folders through the async loaders,
// each of which must settle within a bound. Each load must succeed or throw
// a JS Error, leave the model bit-for-bit unchanged when it throws, and keep RSS bounded.
// Prints one JSON line. Arguments: <dist index.js> <runs per part> <seed>
"use strict";
const crypto = require("crypto");
const fs = require("fs");
const os = require("os");
const path = require("path");
const fc = require("fast-check");
const t = require(process.argv[2]);
const runs = Number(process.argv[3]);
const seed = Number(process.argv[4]);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tl-filefuzz-"));

class Net extends t.nn.Module {
  constructor() {
    super();
    this.emb = new t.nn.Embedding(12, 4);
    this.fc = new t.nn.Linear(4, 6);
  }
  forward(ids) {
    return this.fc.forward(this.emb.forward(ids));
  }
}

function checksum(model) {
  const h = crypto.createHash("sha256");
  for (const [name, m] of model.namedModules()) h.update(`${name}:${m.constructor.name};`);
  for (const [name, p] of model.namedParameters()) h.update(`${name}|${p.dtype}|${p.shape}|`).update(p.toBytes());
  return h.digest("hex");
}

// ---- mutations of a file's bytes
const bytesMutation = fc.oneof(
  fc.double({ min: 0, max: 1, noNaN: true }).map((r) => (b) => b.subarray(0, Math.floor(r * b.length))),
  fc
    .array(fc.tuple(fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 })
    .map((flips) => (b) => {
      const out = Buffer.from(b);
      for (const [r, v] of flips) if (out.length) out[Math.floor(r * out.length)] = v;
      return out;
    }),
  fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }).map((n) => (b) => {
    const out = Buffer.from(b);
    if (out.length >= 8) out.writeBigUInt64LE(n, 0); // declared header length, up to 2^64-1
    return out;
  }),
  fc.constant((b) => b),
);

/** A safetensors file written by hand from header entries, so shapes and dtypes can disagree with the model. */
function safetensors(entries) {
  const header = {};
  const parts = [];
  let offset = 0;
  for (const [name, { dtype, shape, data }] of Object.entries(entries)) {
    header[name] = { dtype, shape, data_offsets: [offset, offset + data.length] };
    parts.push(data);
    offset += data.length;
  }
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([len, json, ...parts]);
}
const f32 = (shape, v = 0.25) => ({ dtype: "F32", shape, data: Buffer.from(new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(v).buffer) });

// ---- non-regular files in place of a file: a FIFO (a hard link to one made once, so no process
// is spawned per run), a symbolic link to that FIFO, a folder, a character device. A reader that
// opened one for reading would block for ever: the parent's timeout turns that into a failure.
const fifo = path.join(dir, "fifo");
require("child_process").execFileSync("mkfifo", [fifo]);
const NON_REGULAR = ["weights-fifo", "config-fifo", "weights-link-to-fifo", "config-link-to-fifo", "weights-is-dir", "weights-is-device"];
/** Puts the non-regular file that `how` asks for at `dir/name`; false when `how` asks for none there. */
function placeNonRegular(dir, how, name) {
  const which = name === "adapter_config.json" ? "config" : "weights";
  if (!how.startsWith(`${which}-`)) return false;
  const target = path.join(dir, name);
  const kind = how.slice(which.length + 1);
  if (kind === "fifo") fs.linkSync(fifo, target);
  else if (kind === "link-to-fifo") fs.symlinkSync(fifo, target);
  else if (kind === "is-dir") fs.mkdirSync(target);
  else if (kind === "is-device") fs.symlinkSync("/dev/zero", target);
  else return false;
  return true;
}

const counts = { runs: 0, loaded: 0, threw: 0, failures: [] };
let peakRss = 0;
function attempt(part, model, load) {
  const before = checksum(model);
  counts.runs++;
  try {
    load();
    counts.loaded++;
  } catch (e) {
    counts.threw++;
    if (!(e instanceof Error) || !e.message) counts.failures.push({ part, problem: "not an Error", value: String(e) });
    else if (checksum(model) !== before) counts.failures.push({ part, problem: "model changed by a failed load", message: e.message.slice(0, 200) });
  }
  if (counts.runs % 100 === 0) peakRss = Math.max(peakRss, process.memoryUsage().rss);
}

// ---- (a) state-dict files into a model
t.manualSeed(seed >>> 0);
const sdModel = new Net();
const sdFile = path.join(dir, "sd.safetensors");
const sdBases = [
  (() => {
    t.io.saveStateDictSync(sdFile, new Net().stateDict());
    return fs.readFileSync(sdFile);
  })(),
  safetensors({ "emb.weight": f32([12, 4]), "fc.weight": f32([6, 4]), "fc.bias": f32([6]) }),
  safetensors({ "emb.weight": f32([12, 4]), "fc.weight": f32([4, 6]), "fc.bias": f32([6]) }), // transposed: wrong shape
  safetensors({ "emb.weight": f32([12, 4]), "fc.weight": f32([6, 4]) }), // missing key
  safetensors({ "emb.weight": { dtype: "I64", shape: [12, 4], data: Buffer.alloc(12 * 4 * 8) }, "fc.weight": f32([6, 4]), "fc.bias": f32([6]) }),
];
fc.sample(fc.tuple(fc.nat(sdBases.length - 1), bytesMutation), { seed, numRuns: runs }).forEach(([i, mutate]) => {
  fs.writeFileSync(sdFile, mutate(sdBases[i]));
  attempt("stateDict", sdModel, () => sdModel.loadStateDict(t.io.loadStateDictFileSync(sdFile)));
});

// ---- (b) PEFT adapter directories
let adapterRuns = 0;
let nonRegularSyncRuns = 0;
if (typeof t.lora.loadAdapter === "function") {
  const config = {
    peft_type: "LORA",
    r: 2,
    lora_alpha: 4,
    lora_dropout: 0,
    target_modules: ["emb", "fc"],
    bias: "none",
    fan_in_fan_out: false,
    use_rslora: false,
    init_lora_weights: true,
    task_type: null,
  };
  const good = {
    "base_model.model.fc.lora_A.weight": f32([2, 4]),
    "base_model.model.fc.lora_B.weight": f32([6, 2]),
    "base_model.model.emb.lora_embedding_A": f32([2, 12]),
    "base_model.model.emb.lora_embedding_B": f32([4, 2]),
  };
  const tensorsVariants = [
    good,
    { ...good, "base_model.model.fc.lora_A.weight": f32([3, 4]) }, // rank disagrees with the config
    { ...good, "base_model.model.fc.lora_A.weight": f32([2, 5]) }, // in-features disagree with the model
    { ...good, "base_model.model.emb.lora_embedding_A": f32([2, 99]) },
    Object.fromEntries(Object.entries(good).slice(1)), // a factor missing
    { ...good, "base_model.model.nope.lora_A.weight": f32([2, 4]) }, // a module the model lacks
    { ...good, "base_model.model.fc.lora_B.weight": { dtype: "F32", shape: [6, 2], data: Buffer.from(new Float32Array(12).fill(NaN).buffer) } },
  ];
  const configVariants = [
    config,
    { ...config, r: -1 },
    { ...config, r: "2" },
    { ...config, r: 2.5 },
    { ...config, lora_alpha: "NaN" },
    { ...config, target_modules: [] },
    { ...config, target_modules: 5 },
    { ...config, target_modules: "(" },
    { ...config, peft_type: "IA3" },
    { ...config, lora_dropout: 2 },
    { ...config, use_dora: true },
    null,
    [],
    "LORA",
  ];
  const layout = fc.constantFrom("ok", "no-config", "no-weights", "config-is-dir", "weights-empty", ...NON_REGULAR);
  const model = new Net();
  fc.sample(fc.tuple(fc.nat(configVariants.length - 1), fc.nat(tensorsVariants.length - 1), bytesMutation, bytesMutation, layout, fc.boolean()), {
    seed: seed + 1,
    numRuns: runs,
  }).forEach(([ci, ti, mutateConfig, mutateWeights, how, named]) => {
    const d = fs.mkdtempSync(path.join(dir, "adapter-"));
    if (how !== "no-config") {
      if (how === "config-is-dir") fs.mkdirSync(path.join(d, "adapter_config.json"));
      else if (!placeNonRegular(d, how, "adapter_config.json"))
        fs.writeFileSync(path.join(d, "adapter_config.json"), mutateConfig(Buffer.from(JSON.stringify(configVariants[ci]))));
    }
    if (how !== "no-weights" && !placeNonRegular(d, how, "adapter_model.safetensors")) {
      fs.writeFileSync(path.join(d, "adapter_model.safetensors"), how === "weights-empty" ? Buffer.alloc(0) : mutateWeights(safetensors(tensorsVariants[ti])));
    }
    adapterRuns++;
    if (NON_REGULAR.includes(how)) nonRegularSyncRuns++;
    attempt("adapter", model, () => {
      const m = t.lora.loadAdapter(model, d, named ? { adapterName: "fuzzed" } : {});
      // Loaded: undo, so that the next attempt starts from the plain model again.
      m.unload();
    });
    fs.rmSync(d, { recursive: true, force: true });
  });
}

// ---- (c) the async loaders on non-regular files: each must settle (with a FormatError) within a bound
async function nonRegularAsync() {
  let done = 0;
  if (typeof t.lora.loadAdapterAsync !== "function") return done;
  const config = JSON.stringify({ peft_type: "LORA", r: 2, lora_alpha: 4, target_modules: ["fc"] });
  const weights = safetensors({ "base_model.model.fc.lora_A.weight": f32([2, 4]), "base_model.model.fc.lora_B.weight": f32([6, 2]) });
  const model = new Net();
  const samples = fc.sample(fc.tuple(fc.constantFrom(...NON_REGULAR, "config-is-dir"), fc.boolean()), { seed: seed + 2, numRuns: Math.ceil(runs / 10) });
  for (const [how, viaStateDict] of samples) {
    const d = fs.mkdtempSync(path.join(dir, "nonregular-"));
    if (how === "config-is-dir") fs.mkdirSync(path.join(d, "adapter_config.json"));
    else if (!placeNonRegular(d, how, "adapter_config.json")) fs.writeFileSync(path.join(d, "adapter_config.json"), config);
    if (!placeNonRegular(d, how, "adapter_model.safetensors")) fs.writeFileSync(path.join(d, "adapter_model.safetensors"), weights);
    const before = checksum(model);
    counts.runs++;
    done++;
    let timer;
    const bound = new Promise((resolve) => (timer = setTimeout(() => resolve("hung"), 10_000)));
    const load = viaStateDict ? t.io.loadStateDictFile(path.join(d, "adapter_model.safetensors")) : t.lora.loadAdapterAsync(model, d);
    const outcome = await Promise.race([
      load.then(
        () => "loaded",
        (e) => e,
      ),
      bound,
    ]);
    clearTimeout(timer);
    if (outcome === "hung") counts.failures.push({ part: "non-regular async", problem: `did not settle within 10 s (${how})` });
    else if (outcome === "loaded") {
      counts.loaded++;
      // Every adapter folder here has a non-regular file; a state dict only when the weights are one.
      const readNonRegular = !viaStateDict || how.startsWith("weights-");
      if (readNonRegular) counts.failures.push({ part: "non-regular async", problem: `loaded through ${how}` });
    } else {
      counts.threw++;
      if (!(outcome instanceof t.FormatError))
        counts.failures.push({ part: "non-regular async", problem: `${how}: not a FormatError`, message: String(outcome && outcome.message).slice(0, 200) });
      else if (checksum(model) !== before) counts.failures.push({ part: "non-regular async", problem: "model changed by a failed load" });
    }
    fs.rmSync(d, { recursive: true, force: true });
  }
  return done;
}

nonRegularAsync().then((nonRegularRuns) => {
  fs.rmSync(dir, { recursive: true, force: true });
  console.log(
    JSON.stringify({
      seed,
      runs: counts.runs,
      adapterRuns,
      nonRegularSyncRuns,
      nonRegularRuns,
      loaded: counts.loaded,
      threw: counts.threw,
      failureCount: counts.failures.length,
      failures: counts.failures.slice(0, 10),
      peakRss,
    }),
  );
});
