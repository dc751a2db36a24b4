/**
 * The command line never writes a wrong weight and never destroys its inputs:
 * - merge takes each weight's layout ((out, in) nn.Linear or (in, out) Conv1D) from its shape, and
 *   for a square weight from --conv1d / --no-conv1d or the model_type in a config.json beside the
 *   base; it refuses, naming the module and the flag, when the layout cannot be known (PEFT's
 *   fan_in_fan_out is false for an adapter on both Conv1D and Linear layers, so it is not trusted);
 * - merge --out refuses the base file itself unless --force, and a missing or empty --out says
 *   that the folder does not exist, before any merging;
 * - FIFOs given as inputs fail at once; a folder of adapter subfolders lists them.
 */
import { execFileSync, spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { Tensor, io, lora, manualSeed, nn } from "../../lib";
import { cleanupTmp, randomizeAdapter, tmpDir } from "../peft/helpers";
import { CLI, ensureBuilt, runCli } from "./run-cli";

beforeAll(ensureBuilt);
afterAll(cleanupTmp);

/** GPT-2's layer names: Conv1D attention and MLP (one of them square), plus a square nn.Linear head. */
class Attn extends nn.Module {
  c_attn = new nn.Conv1D(24, 8); // weight (8, 24)
  c_proj = new nn.Conv1D(8, 8); // weight (8, 8): square, stored (in, out)
}
class Mlp extends nn.Module {
  c_fc = new nn.Conv1D(16, 8); // weight (8, 16)
  c_proj = new nn.Conv1D(8, 16); // weight (16, 8)
}
class Gpt2Like extends nn.Module {
  attn = new Attn();
  mlp = new Mlp();
  score = new nn.Linear(8, 8); // weight (8, 8): square, stored (out, in)
}

const GPT2_CONFIG: lora.LoraConfig = { r: 2, loraAlpha: 6, targetModules: ["c_attn", "c_proj", "c_fc", "score"] };

/** A base file, an adapter whose config says fan_in_fan_out: false (as PEFT writes for a mixed adapter), and the model that made them. */
function gpt2Setup() {
  const dir = tmpDir();
  const make = () => {
    manualSeed(7);
    return new Gpt2Like();
  };
  const basePath = path.join(dir, "model.safetensors");
  io.saveStateDictSync(basePath, make().stateDict());
  const lm = lora.injectAdapter(make(), GPT2_CONFIG);
  randomizeAdapter(lm);
  const adapterDir = path.join(dir, "adapter");
  lm.saveAdapter(adapterDir);
  const configPath = path.join(adapterDir, "adapter_config.json");
  fs.writeFileSync(configPath, JSON.stringify({ ...JSON.parse(fs.readFileSync(configPath, "utf8")), fan_in_fan_out: false }));
  return { dir, basePath, adapterDir, lm, out: path.join(dir, "merged.safetensors") };
}

function f32(t: Tensor): Float32Array {
  const b = t.toBytes();
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}

function expectSameBytes(got: Record<string, Tensor>, want: Record<string, Tensor>): void {
  expect(Object.keys(got).sort()).toEqual(Object.keys(want).sort());
  for (const [k, t] of Object.entries(want)) expect([k, got[k].toBytes().equals(t.toBytes())]).toEqual([k, true]);
}

describe("merge: the layout of each weight", () => {
  it("refuses a square weight whose layout cannot be known, naming the module and the flags, and writes nothing", () => {
    const s = gpt2Setup();
    const r = runCli(["merge", "--base", s.basePath, "--adapter", s.adapterDir, "--out", s.out]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/attn\.c_proj\.weight is square \[8, 8\], so its shape cannot tell whether module attn\.c_proj stores it/);
    expect(r.stderr).toMatch(/no config\.json lies beside the base file/);
    expect(r.stderr).toMatch(/--conv1d <regex>/);
    expect(r.stderr).toMatch(/--no-conv1d/);
    expect(r.stderr).not.toMatch(/merging/);
    expect(fs.existsSync(s.out)).toBe(false);
  });

  it("with a config.json naming model_type gpt2 beside the base, merges every layer as the model does", () => {
    const s = gpt2Setup();
    fs.writeFileSync(path.join(s.dir, "config.json"), JSON.stringify({ model_type: "gpt2", n_embd: 8 }));
    const r = runCli(["merge", "--base", s.basePath, "--adapter", s.adapterDir, "--out", s.out]);
    expect([r.code, r.stderr]).toEqual([0, expect.any(String)]);
    expect(r.stdout).toContain("attn.c_proj.weight  r=2 alpha=6 scale=3 (transposed)");
    expect(r.stdout).toMatch(/score\.weight {2}r=2 alpha=6 scale=3\n/);
    const got = io.loadSafetensorsSync(s.out);

    // By hand, for the square Conv1D: W (in, out) + s·(B·A)ᵀ.
    const base = io.loadSafetensorsSync(s.basePath);
    const layer = s.lm.loraLayers().find(([p]) => p === "attn.c_proj")![1];
    const [A, B] = layer.factors("default").map(f32);
    const W = f32(base["attn.c_proj.weight"]);
    const merged = f32(got["attn.c_proj.weight"]);
    for (let i = 0; i < 8; i++) {
      for (let o = 0; o < 8; o++) {
        let delta = 0;
        for (let k = 0; k < 2; k++) delta += B[o * 2 + k] * A[k * 8 + i];
        expect(merged[i * 8 + o]).toBeCloseTo(W[i * 8 + o] + 3 * delta, 5);
      }
    }
    // And bit for bit what the model's own merge gives (it knows each layer's type).
    expectSameBytes(got, s.lm.mergeAndUnload().stateDict());
  });

  it("with --conv1d naming the Conv1D modules, merges the same without a config.json", () => {
    const s = gpt2Setup();
    const r = runCli(["merge", "--base", s.basePath, "--adapter", s.adapterDir, "--out", s.out, "--conv1d", "c_attn|c_proj|c_fc"]);
    expect(r.code).toBe(0);
    expectSameBytes(io.loadSafetensorsSync(s.out), s.lm.mergeAndUnload().stateDict());
  });

  it("refuses a layout that the shapes contradict: --no-conv1d, or a config.json of an nn.Linear architecture", () => {
    const s = gpt2Setup();
    let r = runCli(["merge", "--base", s.basePath, "--adapter", s.adapterDir, "--out", s.out, "--no-conv1d"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /attn\.c_attn\.weight has shape \[8, 24\], which stores module attn\.c_attn \(in, out\) like Conv1D, but --no-conv1d says \(out, in\)/,
    );
    fs.writeFileSync(path.join(s.dir, "config.json"), JSON.stringify({ model_type: "llama" }));
    r = runCli(["merge", "--base", s.basePath, "--adapter", s.adapterDir, "--out", s.out]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/but .*config\.json \(model_type "llama"\) says \(out, in\)/);
    expect(fs.existsSync(s.out)).toBe(false);
  });

  it("refuses when config.json names an architecture it does not know, naming it and the flags", () => {
    const s = gpt2Setup();
    fs.writeFileSync(path.join(s.dir, "config.json"), JSON.stringify({ model_type: "my-model" }));
    const r = runCli(["merge", "--base", s.basePath, "--adapter", s.adapterDir, "--out", s.out]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/the model_type "my-model" of .*config\.json is not one torch-lora knows the layers of \(.*gpt2.*\).*--conv1d <regex>/);
  });

  it("square nn.Linear layers of a known architecture merge untransposed", () => {
    const dir = tmpDir();
    class Net extends nn.Module {
      q_proj = new nn.Linear(8, 8);
    }
    const make = () => {
      manualSeed(3);
      return new Net();
    };
    io.saveStateDictSync(path.join(dir, "model.safetensors"), make().stateDict());
    fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify({ model_type: "llama" }));
    const lm = lora.injectAdapter(make(), { r: 2, loraAlpha: 4, targetModules: ["q_proj"] });
    randomizeAdapter(lm);
    lm.saveAdapter(path.join(dir, "adapter"));
    const out = path.join(dir, "merged.safetensors");
    const r = runCli(["merge", "--base", path.join(dir, "model.safetensors"), "--adapter", path.join(dir, "adapter"), "--out", out]);
    expect(r.code).toBe(0);
    expect(r.stdout).not.toContain("(transposed)");
    expectSameBytes(io.loadSafetensorsSync(out), lm.mergeAndUnload().stateDict());
  });
});

describe("merge --out", () => {
  /** A setup that would merge fine, with the layout given. */
  function ready() {
    const s = gpt2Setup();
    fs.writeFileSync(path.join(s.dir, "config.json"), JSON.stringify({ model_type: "gpt2" }));
    return s;
  }
  const entries = (dir: string) => fs.readdirSync(dir).sort();

  it("refuses to overwrite the base file, however it is spelled, unless --force", () => {
    const s = ready();
    const before = fs.readFileSync(s.basePath);
    const listed = entries(s.dir);
    fs.symlinkSync(s.basePath, path.join(s.dir, "link.safetensors"));
    for (const out of [s.basePath, path.join(s.dir, "adapter", "..", "model.safetensors"), path.join(s.dir, "link.safetensors")]) {
      const r = runCli(["merge", "--base", s.basePath, "--adapter", s.adapterDir, "--out", out]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(
        /is the base file --base .*model\.safetensors: the merge would overwrite the base model; write elsewhere, or pass --force to replace it/,
      );
      expect(r.stderr).not.toMatch(/merging/);
    }
    expect(fs.readFileSync(s.basePath).equals(before)).toBe(true);
    expect(entries(s.dir)).toEqual([...listed, "link.safetensors"].sort());

    const r = runCli(["merge", "--base", s.basePath, "--adapter", s.adapterDir, "--out", s.basePath, "--force"]);
    expect(r.code).toBe(0);
    expectSameBytes(io.loadSafetensorsSync(s.basePath), s.lm.mergeAndUnload().stateDict());
  });

  it("refuses to overwrite the adapter's weights", () => {
    const s = ready();
    const r = runCli(["merge", "--base", s.basePath, "--adapter", s.adapterDir, "--out", path.join(s.adapterDir, "adapter_model.safetensors")]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/is the adapter's weights file .*: the merge would overwrite the adapter/);
  });

  it("in a missing folder, or empty, says that the folder does not exist, before merging", () => {
    const s = ready();
    const missing = path.join(s.dir, "nowhere");
    let r = runCli(["merge", "--base", s.basePath, "--adapter", s.adapterDir, "--out", path.join(missing, "m.safetensors")]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`torch-lora: --out ${path.join(missing, "m.safetensors")}: the folder ${missing} does not exist; create it first\n`);
    r = runCli(["merge", "--base", s.basePath, "--adapter", s.adapterDir, "--out", ""]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe("torch-lora: --out: the path is empty, so its folder does not exist; give the .safetensors file to write\n");
    r = runCli(["merge", "--base", s.basePath, "--adapter", s.adapterDir, "--out", s.dir]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/--out .*: is a folder; give the path of the \.safetensors file to write/);
  });
});

describe("inputs that are not regular files, and folders of adapters", () => {
  it("a FIFO as --base or as the file to inspect fails at once with exit 1", () => {
    const s = gpt2Setup();
    const fifo = path.join(s.dir, "pipe.safetensors");
    execFileSync("mkfifo", [fifo]);
    for (const args of [
      ["merge", "--base", fifo, "--adapter", s.adapterDir, "--out", s.out, "--no-conv1d"],
      ["inspect", fifo],
    ]) {
      const r = spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8", timeout: 30_000 });
      expect([r.status, r.signal]).toEqual([1, null]);
      expect(r.stderr).toMatch(/pipe\.safetensors: is a named pipe \(FIFO\), not a regular file/);
    }
  });

  it("inspect on a folder of adapter subfolders lists them and suggests --adapter-name", () => {
    const dir = tmpDir();
    const m = lora.injectAdapter(new Gpt2Like(), { r: 2, targetModules: ["score"] }, "alpha");
    m.addAdapter("beta", { r: 2, targetModules: ["score"] });
    m.saveAdapter(dir);
    const r = runCli(["inspect", dir]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/holds no adapter itself but adapters in the subfolders alpha, beta .*--adapter-name alpha/);
    const ok = runCli(["inspect", dir, "--adapter-name", "beta"]);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain(path.join(dir, "beta"));
  });
});
