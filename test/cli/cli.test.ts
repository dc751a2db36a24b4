/**
 * The `torch-lora` command line, run as users run it (`node dist/lib/cli.js` in a child process):
 * merge equals W + s·B·A recomputed from the files in the test (transposed for embeddings and
 * Conv1D), and LoraModel.mergeAndUnload bit for bit; inspect lists what files hold, and bad usage
 * exits 1 with a message.
 */
import * as fs from "fs";
import * as path from "path";
import { Tensor, io, lora, nn, randn, manualSeed } from "../../lib";
import type { Dtype } from "../../lib";
import { TinyModel } from "../helpers/models";
import { cleanupTmp, pythonStyleConfig, randomizeAdapter, tmpDir, writePeftDir } from "../peft/helpers";
import { ensureBuilt, runCli } from "./run-cli";

beforeAll(ensureBuilt);
afterAll(cleanupTmp);

const CONFIG: lora.LoraConfig = {
  r: 4,
  loraAlpha: 16,
  targetModules: ["emb", "fc1", "head"],
  useRslora: true,
  rankPattern: { head: 2 },
  alphaPattern: { fc1: 6 },
};

/** A base file, an adapter directory and the model that made them. */
function setup(options: { dtype?: Dtype; prefix?: string; config?: lora.LoraConfig } = {}) {
  const dir = tmpDir();
  const make = () => {
    manualSeed(21);
    return new TinyModel({ dtype: options.dtype ?? "float32" });
  };
  const baseState = Object.fromEntries(Object.entries(make().stateDict()).map(([k, v]) => [`${options.prefix ?? ""}${k}`, v]));
  const basePath = path.join(dir, "base.safetensors");
  io.saveStateDictSync(basePath, baseState);
  const lm = lora.injectAdapter(make(), options.config ?? CONFIG);
  randomizeAdapter(lm);
  const adapterDir = path.join(dir, "adapter");
  lm.saveAdapter(adapterDir);
  return { dir, basePath, adapterDir, lm, out: path.join(dir, "merged.safetensors") };
}

function expectSameBytes(got: Record<string, Tensor>, want: Record<string, Tensor>, prefix = ""): void {
  expect(Object.keys(got).sort()).toEqual(
    Object.keys(want)
      .map((k) => prefix + k)
      .sort(),
  );
  for (const [k, t] of Object.entries(want)) {
    expect([k, got[prefix + k].dtype]).toEqual([k, t.dtype]);
    expect([k, got[prefix + k].toBytes().equals(t.toBytes())]).toEqual([k, true]);
  }
}

/**
 * The merge recomputed from the files alone, in float64 JS numbers: for each adapted module,
 * base + s·B·A (stored transposed for embeddings and Conv1D), every other tensor unchanged.
 * `modules`: module path → [scale, transposed]. Compared within `tolerance` (relative to 1 + |value|).
 */
function expectMergedByFormula(
  outFile: string,
  baseFile: string,
  adapterFile: string,
  modules: Record<string, [number, boolean]>,
  options: { prefix?: string; tolerance?: number } = {},
): void {
  const { prefix = "", tolerance = 1e-6 } = options;
  const merged = io.loadSafetensorsSync(outFile);
  const base = io.loadSafetensorsSync(baseFile);
  const adapter = io.loadSafetensorsSync(adapterFile);
  const values = (t: Tensor): number[] => Array.from(t.to({ dtype: "float64" }).toArray() as Float64Array);
  expect(Object.keys(merged).sort()).toEqual(Object.keys(base).sort());
  const adapted = new Set(Object.keys(modules).map((m) => `${prefix}${m}.weight`));
  for (const [key, t] of Object.entries(base)) {
    let want = values(t);
    if (adapted.has(key)) {
      const m = key.slice(prefix.length, -".weight".length);
      const [s, transposed] = modules[m];
      const A = adapter[`base_model.model.${m}.lora_A.weight`] ?? adapter[`base_model.model.${m}.lora_embedding_A`];
      const B = adapter[`base_model.model.${m}.lora_B.weight`] ?? adapter[`base_model.model.${m}.lora_embedding_B`];
      const [r, cols] = A.shape;
      const rows = B.shape[0];
      const a = values(A);
      const b = values(B);
      want = want.map((w, flat) => {
        // Row-major position in the stored weight → (i, j) of B·A.
        const [i, j] = transposed ? [flat % rows, Math.floor(flat / rows)] : [Math.floor(flat / cols), flat % cols];
        let dot = 0;
        for (let k = 0; k < r; k++) dot += b[i * r + k] * a[k * cols + j];
        return w + s * dot;
      });
    }
    const got = values(merged[key]);
    const worst = got.reduce((acc, v, n) => Math.max(acc, Math.abs(v - want[n]) / (1 + Math.abs(want[n]))), 0);
    expect({ key, shape: merged[key].shape, close: worst <= tolerance }).toEqual({ key, shape: t.shape, close: true });
  }
}

/** Scales of CONFIG: rsLoRA (alpha/√r), fc1's alpha 6 and head's rank 2 from the patterns. */
const CONFIG_SCALES: Record<string, [number, boolean]> = { emb: [16 / Math.sqrt(4), true], fc1: [6 / Math.sqrt(4), false], head: [16 / Math.sqrt(2), false] };
const adapterFileOf = (dir: string): string => path.join(dir, "adapter_model.safetensors");

describe("torch-lora merge", () => {
  test("equals W + s·B·A recomputed from the files, and mergeAndUnload bit for bit, in fp32 (embedding + Linear, rsLoRA, rank/alpha patterns)", () => {
    const s = setup();
    const r = runCli(["merge", "--base", s.basePath, "--adapter", s.adapterDir, "--out", s.out]);
    expect(r.stderr).toMatch(/merging 1\/3 emb\nmerging 2\/3 fc1\nmerging 3\/3 head\n/); // plain lines when not a terminal
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^merged 3 modules \(2 linear, 1 embedding\)/);
    expect(r.stdout).toContain(`fc1.weight  r=4 alpha=6 scale=${6 / Math.sqrt(4)}`);
    expect(r.stdout).toContain(`head.weight  r=2 alpha=16 scale=${16 / Math.sqrt(2)}`);
    expect(r.stdout).toContain("emb.weight  r=4 alpha=16 scale=8 (transposed)");
    expectMergedByFormula(s.out, s.basePath, adapterFileOf(s.adapterDir), CONFIG_SCALES);
    const want = s.lm.mergeAndUnload().stateDict();
    const got = io.loadSafetensorsSync(s.out);
    expectSameBytes(got, want);
    // The merge did something: the merged weights are not the base ones.
    const base = io.loadSafetensorsSync(s.basePath);
    expect(got["fc1.weight"].equal(base["fc1.weight"])).toBe(false);
    expect(got["fc1.bias"].equal(base["fc1.bias"])).toBe(true);
    expect(io.readSafetensorsHeaderSync(s.out).metadata).toEqual({ format: "pt" });
  });

  test("base keys with a model. prefix are matched", () => {
    const s = setup({ prefix: "model." });
    const r = runCli(["merge", "--base", s.basePath, "--adapter", s.adapterDir, "--out", s.out]);
    expect(r.code).toBe(0);
    expectMergedByFormula(s.out, s.basePath, adapterFileOf(s.adapterDir), CONFIG_SCALES, { prefix: "model." });
    expectSameBytes(io.loadSafetensorsSync(s.out), s.lm.mergeAndUnload().stateDict(), "model.");
  });

  test("bf16 base: merged in fp32 and rounded once, as mergeAndUnload does", () => {
    const s = setup({ dtype: "bfloat16" });
    const r = runCli(["merge", "--base", s.basePath, "--adapter", s.adapterDir, "--out", s.out]);
    expect(r.code).toBe(0);
    // One bf16 rounding of the exact sum: within half a bf16 ulp (2^-8 relative).
    expectMergedByFormula(s.out, s.basePath, adapterFileOf(s.adapterDir), CONFIG_SCALES, { tolerance: 2 ** -8 });
    expectSameBytes(io.loadSafetensorsSync(s.out), s.lm.mergeAndUnload().stateDict());
  });

  test("--dtype f16 casts the output once after an fp32 merge", () => {
    const s = setup();
    const r = runCli(["merge", "--base", s.basePath, "--adapter", s.adapterDir, "--out", s.out, "--dtype", "f16"]);
    expect(r.code).toBe(0);
    // One float16 rounding of the exact sum: within half an fp16 ulp (2^-11 relative).
    expectMergedByFormula(s.out, s.basePath, adapterFileOf(s.adapterDir), CONFIG_SCALES, { tolerance: 2 ** -11 });
    const want = Object.fromEntries(Object.entries(s.lm.mergeAndUnload().stateDict()).map(([k, v]) => [k, v.to({ dtype: "float16" })]));
    expectSameBytes(io.loadSafetensorsSync(s.out), want);
  });

  test("fan_in_fan_out (Conv1D) adds the delta transposed", () => {
    const dir = tmpDir();
    class Net extends nn.Module {
      c_attn = new nn.Conv1D(5, 6);
      c_proj = new nn.Linear(5, 4);
    }
    const make = () => {
      manualSeed(4);
      return new Net();
    };
    io.saveStateDictSync(path.join(dir, "base.safetensors"), make().stateDict());
    const lm = lora.injectAdapter(make(), { r: 2, loraAlpha: 3, targetModules: ["c_attn"] });
    randomizeAdapter(lm);
    lm.saveAdapter(path.join(dir, "adapter"));
    expect(JSON.parse(fs.readFileSync(path.join(dir, "adapter", "adapter_config.json"), "utf8")).fan_in_fan_out).toBe(true);
    const out = path.join(dir, "m.safetensors");
    const r = runCli(["merge", "--base", path.join(dir, "base.safetensors"), "--adapter", path.join(dir, "adapter"), "--out", out]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("c_attn.weight  r=2 alpha=3 scale=1.5 (transposed)");
    expectMergedByFormula(out, path.join(dir, "base.safetensors"), adapterFileOf(path.join(dir, "adapter")), { c_attn: [1.5, true] });
    expectSameBytes(io.loadSafetensorsSync(out), lm.mergeAndUnload().stateDict());
  });

  test("a hand-built PEFT directory merges to what loadAdapter + mergeAndUnload give", () => {
    const s = setup();
    manualSeed(30);
    const tensors = {
      "base_model.model.emb.lora_embedding_A": randn([2, 12]),
      "base_model.model.emb.lora_embedding_B": randn([8, 2]),
      "base_model.model.head.lora_A.weight": randn([3, 16]),
      "base_model.model.head.lora_B.weight": randn([12, 3]),
    };
    const peftDir = path.join(s.dir, "peft");
    writePeftDir(peftDir, tensors, pythonStyleConfig({ r: 3, lora_alpha: 5, rank_pattern: { emb: 2 }, target_modules: "emb|head", future_field: 1 }));
    const r = runCli(["merge", "--base", s.basePath, "--adapter", peftDir, "--out", s.out]);
    expect(r.code).toBe(0);
    // r=3, alpha=5, emb's rank 2 from rank_pattern, no rsLoRA.
    expectMergedByFormula(s.out, s.basePath, adapterFileOf(peftDir), { emb: [5 / 2, true], head: [5 / 3, false] });
    manualSeed(21);
    const want = lora.loadAdapter(new TinyModel(), peftDir).mergeAndUnload().stateDict();
    expectSameBytes(io.loadSafetensorsSync(s.out), want);
  });

  test("a non-default adapter is picked with --adapter-name", () => {
    const s = setup();
    s.lm.addAdapter("other", { r: 2, loraAlpha: 2, targetModules: ["fc1"] });
    randomizeAdapter(s.lm, "other");
    s.lm.saveAdapter(s.adapterDir, { adapterName: "other" });
    const r = runCli(["merge", "--base", s.basePath, "--adapter", s.adapterDir, "--adapter-name", "other", "--out", s.out]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^merged 1 module \(1 linear, 0 embedding\)/);
    expectMergedByFormula(s.out, s.basePath, adapterFileOf(path.join(s.adapterDir, "other")), { fc1: [2 / 2, false] });
    s.lm.setAdapter("other");
    expectSameBytes(io.loadSafetensorsSync(s.out), s.lm.mergeAndUnload().stateDict());
  });

  test("--safe refuses NaN/Inf and writes nothing; without it the file is written", () => {
    const s = setup();
    const weights = io.loadSafetensorsSync(path.join(s.adapterDir, "adapter_model.safetensors"));
    weights["base_model.model.fc1.lora_B.weight"] = randn([16, 4]).mul(1e38);
    io.saveSafetensorsSync(path.join(s.adapterDir, "adapter_model.safetensors"), weights);
    const r = runCli(["merge", "--base", s.basePath, "--adapter", s.adapterDir, "--out", s.out, "--safe"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/refused \(--safe\): fc1\.weight would hold NaN or Inf/);
    expect(fs.existsSync(s.out)).toBe(false);
    expect(runCli(["merge", "--base", s.basePath, "--adapter", s.adapterDir, "--out", s.out]).code).toBe(0);
    expect(io.loadSafetensorsSync(s.out)["fc1.weight"].allFinite()).toBe(false);
  });

  test("mismatches exit 1 with a clear message", () => {
    const s = setup();
    const base = io.loadSafetensorsSync(s.basePath);
    const noFc1 = path.join(s.dir, "nofc1.safetensors");
    io.saveSafetensorsSync(noFc1, Object.fromEntries(Object.entries(base).filter(([k]) => k !== "fc1.weight")));
    let r = runCli(["merge", "--base", noFc1, "--adapter", s.adapterDir, "--out", s.out]);
    expect([r.code, r.stderr]).toEqual([1, expect.stringMatching(/^torch-lora: .*nofc1\.safetensors: the base weights lack fc1\.weight/)]);

    const wrong = path.join(s.dir, "wrong.safetensors");
    io.saveSafetensorsSync(wrong, { ...base, "fc1.weight": randn([16, 9]) });
    r = runCli(["merge", "--base", wrong, "--adapter", s.adapterDir, "--out", s.out]);
    expect([r.code, r.stderr]).toEqual([1, expect.stringMatching(/fc1\.weight has shape \[16, 9\], but the adapter for fc1 needs \[16, 8\]/)]);

    const dora = path.join(s.dir, "dora");
    writePeftDir(
      dora,
      io.loadSafetensorsSync(path.join(s.adapterDir, "adapter_model.safetensors")),
      pythonStyleConfig({ use_dora: true, target_modules: ["fc1"] }),
    );
    r = runCli(["merge", "--base", s.basePath, "--adapter", dora, "--out", s.out]);
    expect([r.code, r.stderr]).toEqual([1, expect.stringMatching(/use_dora = true is not supported/)]);

    r = runCli(["merge", "--base", s.basePath, "--adapter", path.join(s.dir, "missing"), "--out", s.out]);
    expect([r.code, r.stderr]).toEqual([1, expect.stringMatching(/missing: no such adapter directory/)]);
    r = runCli(["merge", "--base", path.join(s.dir, "missing.safetensors"), "--adapter", s.adapterDir, "--out", s.out]);
    expect([r.code, r.stderr]).toEqual([1, expect.stringMatching(/ENOENT.*missing\.safetensors/)]);
    expect(fs.existsSync(s.out)).toBe(false);
  });
});

describe("torch-lora inspect", () => {
  test("a safetensors file: name, dtype, shape, bytes", () => {
    const s = setup();
    const r = runCli(["inspect", s.basePath]);
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split("\n");
    expect(lines[0]).toBe(`${s.basePath}: 5 tensors, ${4 * (12 * 8 + 16 * 8 + 16 + 12 * 16 + 12)} bytes of data`);
    expect(lines[1]).toBe('metadata: {"format":"pt"}');
    expect(lines.slice(2).map((l) => l.split(/\s{2,}/))).toEqual([
      ["name", "dtype", "shape", "bytes"],
      ["emb.weight", "F32", "[12, 8]", "384"],
      ["fc1.bias", "F32", "[16]", "64"],
      ["fc1.weight", "F32", "[16, 8]", "512"],
      ["head.bias", "F32", "[12]", "48"],
      ["head.weight", "F32", "[12, 16]", "768"],
    ]);
    const json = JSON.parse(runCli(["inspect", "--json", s.basePath]).stdout);
    expect(json.tensors[2]).toEqual({ name: "fc1.weight", dtype: "F32", shape: [16, 8], bytes: 512 });
  });

  test("an adapter directory: config and modules with r, alpha and scale", () => {
    const s = setup();
    const r = runCli(["inspect", s.adapterDir]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`adapter ${s.adapterDir}: 3 modules`);
    expect(r.stdout).toContain("  use_rslora: true");
    const table = r.stdout
      .trim()
      .split("\n")
      .slice(-4)
      .map((l) => l.split(/\s{2,}/));
    expect(table).toEqual([
      ["module", "kind", "r", "alpha", "scale", "A", "B", "dtype"],
      ["emb", "embedding", "4", "16", "8", "[4, 12]", "[8, 4]", "float32"],
      ["fc1", "linear", "4", "6", "3", "[4, 8]", "[16, 4]", "float32"],
      ["head", "linear", "2", "16", String(16 / Math.sqrt(2)), "[2, 16]", "[12, 2]", "float32"],
    ]);
    const json = JSON.parse(runCli(["inspect", s.adapterDir, "--json"]).stdout);
    expect(json.modules.map((m: { module: string; scale: number }) => [m.module, m.scale])).toEqual([
      ["emb", 8],
      ["fc1", 3],
      ["head", 16 / Math.sqrt(2)],
    ]);
  });

  test("a missing path exits 1", () => {
    const r = runCli(["inspect", "/nonexistent/file.safetensors"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^torch-lora: .*ENOENT/);
  });
});

describe("usage", () => {
  test.each([[["--help"]], [["merge", "--help"]], [["inspect", "--help"]], [["help", "merge"]]])("%j prints help and exits 0", (args) => {
    const r = runCli(args);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Usage: torch-lora/);
  });

  test("--version prints the package version", () => {
    const r = runCli(["--version"]);
    expect([r.code, r.stdout.trim()]).toEqual([0, require("../../package.json").version]);
  });

  test.each([
    [[], /Usage: torch-lora/],
    [["frobnicate"], /unknown command 'frobnicate'/],
    [["merge", "--base", "x.safetensors"], /required option '--adapter <dir>' not specified/],
    [
      ["merge", "--base", "a", "--adapter", "b", "--out", "c", "--dtype", "f8"],
      /option '--dtype <dtype>' argument 'f8' is invalid.*f32, f16, bf16|Allowed choices are f32, f16, bf16/,
    ],
    [["inspect"], /missing required argument 'path'/],
    [["inspect", "a", "b"], /too many arguments/],
    [["inspect", "x.safetensors", "--bogus"], /unknown option '--bogus'/],
  ])("bad usage %j exits 1 with a message", (args, pattern) => {
    const r = runCli(args as string[]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(pattern);
  });
});
