/**
 * The PEFT-format writer and loader at their edges: arguments refused by name before any file is
 * touched, the adapter folder found (subfolders, a "default" subfolder, a pickle left instead of
 * safetensors), `fan_in_fan_out` for Conv1D, the converted save of a named adapter, and the exact
 * wording of a weights file that does not fit (long key lists, the adapter-name hint, several
 * problems at once), with the model unchanged after every refusal.
 */
import * as fs from "fs";
import * as path from "path";
import { ConfigError, FormatError, Tensor, io, lora, manualSeed, nn, randn } from "../../lib";
import { adapterSubfolders } from "../../lib/lora/peft-format";
import { messageOf } from "../helpers/errors";
import { changedParameters, cleanupTmp, pythonStyleConfig, seededModel, snapshot, tmpDir, writePeftDir } from "./helpers";

afterAll(cleanupTmp);

/** PEFT's keys for the default config of pythonStyleConfig (r 4 on emb and fc1 of a TinyModel: vocab 12, dim 8, hidden 16). */
function goodTensors(seed = 8): Record<string, Tensor> {
  manualSeed(seed);
  return {
    "base_model.model.emb.lora_embedding_A": randn([4, 12]),
    "base_model.model.emb.lora_embedding_B": randn([8, 4]),
    "base_model.model.fc1.lora_A.weight": randn([4, 8]),
    "base_model.model.fc1.lora_B.weight": randn([16, 4]),
  };
}

function adapterDir(tensors: Record<string, Tensor> = goodTensors(), config: Record<string, unknown> = {}): string {
  const dir = tmpDir();
  writePeftDir(dir, tensors, pythonStyleConfig(config));
  return dir;
}

/** Loads `dir` into a fresh model; returns the FormatError's message after checking that the model is unchanged. */
function refusal(dir: string, model: nn.Module = seededModel()): string {
  const before = snapshot(model);
  const message = messageOf(() => lora.loadAdapter(model, dir), FormatError);
  expect(changedParameters(before, snapshot(model))).toEqual([]);
  return message;
}

const weightsOf = (dir: string): string => path.join(dir, "adapter_model.safetensors");

describe("saveAdapter arguments", () => {
  const model = (): lora.LoraModel => lora.injectAdapter(seededModel(), { targetModules: ["fc1"], r: 2 });

  it("refuses an empty or non-list adapterName by name, and writes nothing", () => {
    const dir = path.join(tmpDir(), "out");
    const m = model();
    expect(messageOf(() => m.saveAdapter(dir, { adapterName: [] }), TypeError)).toBe(
      "adapterName: expected an adapter name or a non-empty list of names, got an array of length 0",
    );
    expect(messageOf(() => m.saveAdapter(dir, { adapterName: 42 as never }), TypeError)).toBe(
      "adapterName: expected an adapter name or a non-empty list of names, got 42",
    );
    expect(fs.existsSync(dir)).toBe(false);
  });

  it("refuses an empty or non-string directory by name", () => {
    const m = model();
    expect(messageOf(() => m.saveAdapter(""), TypeError)).toBe('dir: expected a directory path, got the string ""');
    expect(messageOf(() => lora.saveAdapter(m, 42 as never), TypeError)).toBe("dir: expected a directory path, got 42");
  });
});

describe("saveAdapter output", () => {
  it("records fan_in_fan_out: true for a Conv1D model (weights stored (in, out)) and false for Linear", () => {
    class Gpt2Like extends nn.Module {
      c_attn = new nn.Conv1D(6, 4); // transformers' Conv1D(nf = out, nx = in): weight [4, 6]
      override forward(x: Tensor): Tensor {
        return this.c_attn.forward(x);
      }
    }
    manualSeed(1);
    const conv = lora.injectAdapter(new Gpt2Like(), { targetModules: ["c_attn"], r: 2 });
    const convDir = tmpDir();
    conv.saveAdapter(convDir);
    const convConfig = JSON.parse(fs.readFileSync(path.join(convDir, "adapter_config.json"), "utf8"));
    expect(convConfig.fan_in_fan_out).toBe(true);
    const saved = io.loadSafetensorsSync(weightsOf(convDir));
    expect(Object.keys(saved).sort()).toEqual(["base_model.model.c_attn.lora_A.weight", "base_model.model.c_attn.lora_B.weight"]);
    expect(saved["base_model.model.c_attn.lora_A.weight"].shape).toEqual([2, 4]);
    expect(saved["base_model.model.c_attn.lora_B.weight"].shape).toEqual([6, 2]);

    const linDir = tmpDir();
    lora.injectAdapter(seededModel(), { targetModules: ["fc1"], r: 2 }).saveAdapter(linDir);
    expect(JSON.parse(fs.readFileSync(path.join(linDir, "adapter_config.json"), "utf8")).fan_in_fan_out).toBe(false);
  });

  it("the weights file carries PEFT's metadata format: pt", () => {
    const dir = tmpDir();
    lora.injectAdapter(seededModel(), { targetModules: ["fc1"], r: 2 }).saveAdapter(dir);
    // The header, read from the bytes: an 8-byte little-endian length, then JSON.
    const bytes = fs.readFileSync(weightsOf(dir));
    const header = JSON.parse(bytes.subarray(8, 8 + Number(bytes.readBigUInt64LE(0))).toString("utf8"));
    expect(header.__metadata__).toEqual({ format: "pt" });
  });

  it("a named PiSSA adapter saved with its conversion goes to <dir>/<name>, as plain LoRA of rank 2r", () => {
    class Two extends nn.Module {
      q = new nn.Linear(10, 10);
      override forward(x: Tensor): Tensor {
        return this.q.forward(x);
      }
    }
    manualSeed(2);
    const lm = lora.injectAdapter(new Two(), { r: 2, targetModules: ["q"], initLoraWeights: "pissa" }, "p");
    const initialRoot = tmpDir();
    expect(lm.saveAdapter(initialRoot)).toEqual([path.join(initialRoot, "p")]);
    const outRoot = tmpDir();
    expect(lm.saveAdapter(outRoot, { pathInitialModelForWeightConversion: path.join(initialRoot, "p") })).toEqual([path.join(outRoot, "p")]);
    expect(fs.readdirSync(outRoot)).toEqual(["p"]);
    const config = JSON.parse(fs.readFileSync(path.join(outRoot, "p", "adapter_config.json"), "utf8"));
    expect(config.r).toBe(4);
    expect(io.loadSafetensorsSync(weightsOf(path.join(outRoot, "p")))["base_model.model.q.lora_A.weight"].shape).toEqual([4, 10]);
  });
});

describe("finding the adapter's files", () => {
  it("adapterSubfolders lists the visible subfolders holding adapter_config.json, sorted; a missing folder has none", () => {
    const dir = tmpDir();
    const adapters = ["m", "c", "x", "a", "q", "f"];
    for (const sub of [...adapters, ".hidden", "b"]) fs.mkdirSync(path.join(dir, sub));
    for (const sub of [...adapters, ".hidden"]) fs.writeFileSync(path.join(dir, sub, "adapter_config.json"), "{}");
    fs.writeFileSync(path.join(dir, "d"), "not a folder");
    expect(adapterSubfolders(dir)).toEqual(["a", "c", "f", "m", "q", "x"]);
    expect(adapterSubfolders(path.join(dir, "missing"))).toEqual([]);
    expect(adapterSubfolders(path.join(dir, "d"))).toEqual([]);
  });

  it("a folder holding only adapter subfolders is refused with their list, and with the name asked for when one was", () => {
    const dir = tmpDir();
    const m = lora.injectAdapter(seededModel(), { targetModules: ["fc1"], r: 2 }, "zeta");
    m.addAdapter("alpha", { targetModules: ["fc1"], r: 2 });
    expect(m.saveAdapter(dir).sort()).toEqual([path.join(dir, "alpha"), path.join(dir, "zeta")]);
    fs.mkdirSync(path.join(dir, ".backup-like"));
    fs.writeFileSync(path.join(dir, ".backup-like", "adapter_config.json"), "{}");
    const advice = `(saveAdapter puts adapters other than "default" in subfolders); pick one with adapterName: "alpha" (torch-lora CLI: --adapter-name alpha)`;
    expect(refusal(dir)).toBe(`${dir}: holds no adapter itself but adapters in the subfolders alpha, zeta ${advice}`);
    const model = seededModel();
    expect(messageOf(() => lora.loadAdapter(model, dir, { adapterName: "beta" }), FormatError)).toBe(
      `${dir}: holds no adapter itself but adapters in the subfolders alpha, zeta and none is called "beta" ${advice}`,
    );
    // The subfolder named loads.
    expect(lora.loadAdapter(model, dir, { adapterName: "alpha" }).adapterNames).toEqual(["alpha"]);
  });

  it('adapterName "default" loads the folder itself, even when it has a subfolder called "default"', () => {
    const top = goodTensors(8);
    const dir = adapterDir(top);
    manualSeed(9);
    writePeftDir(
      path.join(dir, "default"),
      {
        "base_model.model.fc1.lora_A.weight": randn([2, 8]),
        "base_model.model.fc1.lora_B.weight": randn([16, 2]),
      },
      pythonStyleConfig({ r: 2, target_modules: ["fc1"] }),
    );
    const m = lora.loadAdapter(seededModel(), dir, { adapterName: "default" });
    expect(m.loraLayers().map(([p]) => p)).toEqual(["emb", "fc1"]);
    const [A, B] = m.loraLayers()[1][1].factors("default");
    expect(A.equal(top["base_model.model.fc1.lora_A.weight"])).toBe(true);
    expect(B.equal(top["base_model.model.fc1.lora_B.weight"])).toBe(true);
  });

  it("a folder without its weights file names the file, and says so when adapter_model.bin (a pickle) is there instead", () => {
    const dir = tmpDir();
    fs.writeFileSync(path.join(dir, "adapter_config.json"), pythonStyleConfig({}));
    expect(refusal(dir)).toBe(`${weightsOf(dir)}: missing`);
    fs.writeFileSync(path.join(dir, "adapter_model.bin"), Buffer.from([0x80, 0x02]));
    expect(refusal(dir)).toBe(`${weightsOf(dir)}: missing (this adapter was saved as adapter_model.bin, a pickle; save it again with safe_serialization=True)`);
  });

  it("an empty or non-string directory is refused by name", () => {
    expect(messageOf(() => lora.loadAdapter(seededModel(), ""), TypeError)).toBe('dir: expected an adapter directory path, got the string ""');
    expect(messageOf(() => lora.locateAdapter(7 as never), TypeError)).toBe("dir: expected an adapter directory path, got 7");
  });

  it("a config that cannot be read is a FormatError naming it, with the system's reason", () => {
    const file = path.join(tmpDir(), "nowhere", "adapter_config.json");
    expect(messageOf(() => lora.readAdapterConfig(file), FormatError)).toBe(`${file}: cannot be read (ENOENT: no such file or directory, stat '${file}')`);
  });
});

describe("loadAdapter arguments are checked before any file is read", () => {
  it("a non-boolean autocastAdapterDtype is refused by name, even for a folder that does not exist", () => {
    const missing = path.join(tmpDir(), "missing");
    expect(messageOf(() => lora.loadAdapter(seededModel(), missing, { autocastAdapterDtype: "yes" as never }), TypeError)).toBe(
      'autocastAdapterDtype: expected a boolean, got the string "yes"',
    );
  });

  it("null options are refused by name", () => {
    const dir = adapterDir();
    expect(messageOf(() => lora.loadAdapter(seededModel(), dir, null as never), TypeError)).toBe("options: expected an options object, got null");
  });
});

describe("a weights file that does not fit", () => {
  it("names the key and both shapes of a factor of the wrong shape", () => {
    const tensors = goodTensors();
    manualSeed(3);
    tensors["base_model.model.fc1.lora_A.weight"] = randn([3, 8]);
    const dir = adapterDir(tensors);
    expect(refusal(dir)).toBe(
      `${weightsOf(dir)}: does not fit the model: base_model.model.fc1.lora_A.weight: shape [3, 8] in the file, [4, 8] expected by the model and config`,
    );
  });

  it("lists every problem, separated by semicolons", () => {
    const tensors = goodTensors();
    delete tensors["base_model.model.fc1.lora_B.weight"];
    manualSeed(3);
    tensors["base_model.model.head.lora_A.weight"] = randn([4, 16]);
    tensors["base_model.model.emb.lora_embedding_A"] = randn([4, 11]);
    const dir = adapterDir(tensors);
    expect(refusal(dir)).toBe(
      `${weightsOf(dir)}: does not fit the model: missing keys: base_model.model.fc1.lora_B.weight; ` +
        "unexpected keys: base_model.model.head.lora_A.weight (the config's target_modules does not select these modules in this model); " +
        "base_model.model.emb.lora_embedding_A: shape [4, 11] in the file, [4, 12] expected by the model and config",
    );
  });

  it("lists at most 12 keys, then how many there are", () => {
    const extra = (n: number): string[] => Array.from({ length: n }, (_, i) => `base_model.model.extra.w${String(i).padStart(2, "0")}`);
    const hint = " (the config's target_modules does not select these modules in this model)";
    for (const n of [12, 13]) {
      const tensors = goodTensors();
      manualSeed(3);
      for (const k of extra(n)) tensors[k] = randn([2]);
      const dir = adapterDir(tensors);
      const listed = extra(n).slice(0, 12).join(", ") + (n > 12 ? `, ... (${n} in all)` : "");
      expect(refusal(dir)).toBe(`${weightsOf(dir)}: does not fit the model: unexpected keys: ${listed}${hint}`);
    }
  });

  it("says the keys carry the adapter name when any unexpected key does", () => {
    const tensors = goodTensors();
    manualSeed(3);
    tensors["base_model.model.fc1.lora_A.default.weight"] = randn([4, 8]);
    tensors["base_model.model.zz.weight"] = randn([2]);
    const dir = adapterDir(tensors);
    expect(refusal(dir)).toBe(
      `${weightsOf(dir)}: does not fit the model: unexpected keys: base_model.model.fc1.lora_A.default.weight, base_model.model.zz.weight ` +
        "(these keys carry the adapter name; PEFT strips it when saving)",
    );
  });

  it("a key naming another adapter's live factor is unexpected: that adapter's factors are never written", () => {
    const m = lora.injectAdapter(seededModel(), { targetModules: ["fc1"], r: 4 }, "other");
    const tensors = goodTensors();
    manualSeed(3);
    tensors["base_model.model.fc1.lora_A.other.weight"] = randn([4, 8]);
    const dir = adapterDir(tensors);
    const before = snapshot(m.model);
    expect(messageOf(() => lora.loadAdapter(m, dir), FormatError)).toBe(
      `${weightsOf(dir)}: does not fit the model: unexpected keys: base_model.model.fc1.lora_A.other.weight ` +
        "(the config's target_modules does not select these modules in this model)",
    );
    expect(changedParameters(before, snapshot(m.model))).toEqual([]);
    expect(m.adapterNames).toEqual(["other"]);
  });
});

describe("target_modules entries absent from the model", () => {
  it("are skipped at load, as PEFT does, and listed in unmatchedTargets", () => {
    const tensors = goodTensors();
    const dir = adapterDir(tensors, { target_modules: ["fc1", "emb", "q_proj"] });
    const m = lora.loadAdapter(seededModel(), dir);
    expect(m.unmatchedTargets).toEqual({ default: ["q_proj"] });
    expect(m.loraLayers()[1][1].factors("default")[0].equal(tensors["base_model.model.fc1.lora_A.weight"])).toBe(true);
    // Injecting the same config by hand still refuses the entry.
    expect(() => lora.injectAdapter(seededModel(), { targetModules: ["fc1", "emb", "q_proj"] })).toThrow(ConfigError);
  });
});
