import * as fs from "fs";
import * as path from "path";
import { Tensor, io, lora } from "../../lib";
import { cleanupTmp, ids, randomizeAdapter, seededModel, tmpDir } from "./helpers";

afterAll(cleanupTmp);

// The fields Python PEFT's LoraConfig.to_dict() writes (read from src/peft/tuners/lora/config.py and
// src/peft/config.py), plus our own "torch_lora" entry.
const PEFT_FIELDS = [
  "alora_invocation_tokens",
  "alpha_pattern",
  "arrow_config",
  "auto_mapping",
  "base_model_name_or_path",
  "bias",
  "corda_config",
  "ensure_weight_tying",
  "eva_config",
  "exclude_modules",
  "fan_in_fan_out",
  "inference_mode",
  "init_lora_weights",
  "kasa_config",
  "layer_replication",
  "layers_pattern",
  "layers_to_transform",
  "loftq_config",
  "lora_alpha",
  "lora_bias",
  "lora_dropout",
  "lora_ga_config",
  "megatron_config",
  "megatron_core",
  "modules_to_save",
  "monteclora_config",
  "peft_type",
  "qalora_group_size",
  "r",
  "rank_pattern",
  "revision",
  "target_modules",
  "target_parameters",
  "task_type",
  "trainable_token_indices",
  "use_bdlora",
  "use_dora",
  "use_qalora",
  "use_rslora",
  "velora_config",
];

function trainedModel(config: lora.LoraConfig, name = "default"): lora.LoraModel {
  const lm = lora.injectAdapter(seededModel(), config, name);
  randomizeAdapter(lm, name);
  return lm;
}

const CONFIG: lora.LoraConfig = {
  r: 4,
  loraAlpha: 16,
  targetModules: ["emb", "fc1", "head"],
  useRslora: true,
  rankPattern: { head: 2 },
  alphaPattern: { fc1: 6 },
  embeddingInit: "b-normal",
  embeddingInitStd: 0.5,
};

describe("save → load round trip", () => {
  test("the reloaded model gives bit-identical outputs", () => {
    const lm = trainedModel(CONFIG);
    const expected = lm.eval().forward(ids()) as Tensor;
    const base = seededModel().forward(ids()) as Tensor;
    expect(expected.equal(base)).toBe(false); // the adapter really changes the output
    const dir = tmpDir();
    expect(lm.saveAdapter(dir)).toEqual([dir]);

    const reloaded = lora.loadAdapter(seededModel(), dir);
    expect(reloaded.forward(ids()).equal(expected)).toBe(true);
    // The settings per layer come back from the config: rsLoRA, rank and alpha patterns.
    const layers = Object.fromEntries(reloaded.loraLayers());
    expect(layers.head.settings("default")).toEqual({ r: 2, alpha: 16, scale: 16 / Math.sqrt(2), dropout: 0 });
    expect(layers.fc1.settings("default")!.scale).toBe(6 / Math.sqrt(4));
    expect(reloaded.peftConfig.default).toEqual(lm.peftConfig.default);
  });

  test("the files have exactly PEFT's key names, metadata and config fields", () => {
    const lm = trainedModel(CONFIG);
    const dir = tmpDir();
    lm.saveAdapter(dir);
    expect(fs.readdirSync(dir).sort()).toEqual(["adapter_config.json", "adapter_model.safetensors"]);
    const header = io.readSafetensorsHeaderSync(path.join(dir, "adapter_model.safetensors"));
    expect(header.metadata).toEqual({ format: "pt" });
    expect(header.tensors.map((t) => [t.name, t.shape])).toEqual([
      ["base_model.model.emb.lora_embedding_A", [4, 12]],
      ["base_model.model.emb.lora_embedding_B", [8, 4]],
      ["base_model.model.fc1.lora_A.weight", [4, 8]],
      ["base_model.model.fc1.lora_B.weight", [16, 4]],
      ["base_model.model.head.lora_A.weight", [2, 16]],
      ["base_model.model.head.lora_B.weight", [12, 2]],
    ]);
    // The stored values are the factors themselves.
    const stored = io.loadSafetensorsSync(path.join(dir, "adapter_model.safetensors"));
    const fc1 = Object.fromEntries(lm.loraLayers()).fc1;
    expect(stored["base_model.model.fc1.lora_B.weight"].equal(fc1.factors("default")[1].detach())).toBe(true);

    const text = fs.readFileSync(path.join(dir, "adapter_config.json"), "utf8");
    const json = JSON.parse(text);
    expect(Object.keys(json).sort()).toEqual([...PEFT_FIELDS, "torch_lora"].sort());
    expect(Object.keys(json)).toEqual(Object.keys(json).sort()); // sort_keys=True, as PEFT writes it
    expect(json).toMatchObject({
      peft_type: "LORA",
      task_type: null,
      r: 4,
      lora_alpha: 16,
      lora_dropout: 0,
      target_modules: ["emb", "fc1", "head"],
      exclude_modules: null,
      use_rslora: true,
      fan_in_fan_out: false,
      bias: "none",
      init_lora_weights: true,
      rank_pattern: { head: 2 },
      alpha_pattern: { fc1: 6 },
      modules_to_save: null,
      inference_mode: true,
      use_dora: false,
      base_model_name_or_path: null,
      revision: null,
      layers_to_transform: null,
      layers_pattern: null,
      torch_lora: { embedding_init: "b-normal", embedding_init_std: 0.5 },
    });
    expect(text.startsWith('{\n  "alora_invocation_tokens": null,\n')).toBe(true); // indent=2
  });

  test("adapter_model.safetensors is, byte for byte, the PEFT layout built here by hand", () => {
    const lm = trainedModel(CONFIG);
    const dir = tmpDir();
    lm.saveAdapter(dir);
    // PEFT's keys (adapter name stripped; embeddings without ".weight"), the values of the
    // factors as little-endian float32, in the order safetensors' own writer uses for one
    // dtype: by name.
    const layers = Object.fromEntries(lm.loraLayers());
    const entries: [string, Tensor][] = [];
    for (const m of ["emb", "fc1", "head"]) {
      const [A, B] = layers[m].factors("default");
      const [a, b] = m === "emb" ? ["lora_embedding_A", "lora_embedding_B"] : ["lora_A.weight", "lora_B.weight"];
      entries.push([`base_model.model.${m}.${a}`, A], [`base_model.model.${m}.${b}`, B]);
    }
    let offset = 0;
    const fields: string[] = ['"__metadata__":{"format":"pt"}'];
    const data: Buffer[] = [];
    for (const [key, t] of entries) {
      const bytes = Buffer.from(Float32Array.from(t.toList() as number[]).buffer);
      fields.push(`"${key}":{"dtype":"F32","shape":[${t.shape.join(",")}],"data_offsets":[${offset},${offset + bytes.length}]}`);
      data.push(bytes);
      offset += bytes.length;
    }
    // The JSON header, padded with spaces to a multiple of 8, after its u64 little-endian length.
    const json = `{${fields.join(",")}}`;
    const header = json.padEnd(Math.ceil(json.length / 8) * 8, " ");
    const prefix = Buffer.alloc(8);
    prefix.writeBigUInt64LE(BigInt(header.length));
    const expected = Buffer.concat([prefix, Buffer.from(header, "latin1"), ...data]);
    const written = fs.readFileSync(path.join(dir, "adapter_model.safetensors"));
    expect(written.subarray(8, 8 + header.length).toString("latin1")).toBe(header);
    expect(written.length).toBe(expected.length);
    expect(written.equals(expected)).toBe(true);
  });

  test("a regex target_modules and 'gaussian' init are written as given", () => {
    const lm = trainedModel({ r: 2, targetModules: "(fc1|head)", initLoraWeights: "gaussian", excludeModules: ["head"] });
    const dir = tmpDir();
    lm.saveAdapter(dir);
    const json = JSON.parse(fs.readFileSync(path.join(dir, "adapter_config.json"), "utf8"));
    expect(json.target_modules).toBe("(fc1|head)");
    expect(json.exclude_modules).toEqual(["head"]);
    expect(json.init_lora_weights).toBe("gaussian");
    const reloaded = lora.loadAdapter(seededModel(), dir);
    expect(reloaded.loraLayers().map(([p]) => p)).toEqual(["fc1"]);
    expect((reloaded.forward(ids()) as Tensor).equal(lm.eval().forward(ids()) as Tensor)).toBe(true);
  });

  test("a non-default adapter goes to a subfolder named after it, and loads back from there", () => {
    const lm = trainedModel({ r: 4, targetModules: ["fc1"] });
    lm.addAdapter("second", { r: 2, loraAlpha: 4, targetModules: ["head", "emb"] });
    randomizeAdapter(lm, "second");
    const dir = tmpDir();
    expect(lm.saveAdapter(dir)).toEqual([dir, path.join(dir, "second")]);
    expect(fs.readdirSync(dir).sort()).toEqual(["adapter_config.json", "adapter_model.safetensors", "second"]);
    const secondKeys = io.readSafetensorsHeaderSync(path.join(dir, "second", "adapter_model.safetensors")).tensors.map((t) => t.name);
    expect(secondKeys).toEqual([
      "base_model.model.emb.lora_embedding_A",
      "base_model.model.emb.lora_embedding_B",
      "base_model.model.head.lora_A.weight",
      "base_model.model.head.lora_B.weight",
    ]);
    const defaultKeys = io.readSafetensorsHeaderSync(path.join(dir, "adapter_model.safetensors")).tensors.map((t) => t.name);
    expect(defaultKeys).toEqual(["base_model.model.fc1.lora_A.weight", "base_model.model.fc1.lora_B.weight"]);

    // Only one adapter saved on request; into a new directory.
    const only = tmpDir();
    expect(lm.saveAdapter(only, { adapterName: "second" })).toEqual([path.join(only, "second")]);
    expect(fs.readdirSync(only)).toEqual(["second"]);

    // Both adapters back into one model: outputs match per active adapter.
    lm.eval();
    const want = { default: lm.forward(ids()) as Tensor, second: (lm.setAdapter("second"), lm.forward(ids()) as Tensor) };
    const reloaded = lora.loadAdapter(seededModel(), dir);
    expect(lora.loadAdapter(reloaded, dir, { adapterName: "second" })).toBe(reloaded);
    expect(reloaded.adapterNames).toEqual(["default", "second"]);
    expect((reloaded.forward(ids()) as Tensor).equal(want.default)).toBe(true);
    reloaded.setAdapter("second");
    expect((reloaded.forward(ids()) as Tensor).equal(want.second)).toBe(true);
  });

  test("isTrainable: frozen and in eval mode by default, trainable on request", () => {
    const lm = trainedModel({ r: 2, targetModules: ["fc1"] });
    const dir = tmpDir();
    lm.saveAdapter(dir);
    const frozen = lora.loadAdapter(seededModel(), dir);
    expect(frozen.trainableParameters()).toHaveLength(0);
    expect(frozen.training).toBe(false);
    const trainable = lora.loadAdapter(seededModel(), dir, { isTrainable: true });
    const [A, B] = Object.fromEntries(trainable.loraLayers()).fc1.factors("default");
    expect(new Set(trainable.trainableParameters())).toEqual(new Set([A, B]));
  });

  test("async twins write the same files and load the same adapter", async () => {
    const lm = trainedModel(CONFIG);
    const syncDir = tmpDir();
    const asyncDir = tmpDir();
    lm.saveAdapter(syncDir);
    expect(await lm.saveAdapterAsync(asyncDir)).toEqual([asyncDir]);
    for (const f of ["adapter_config.json", "adapter_model.safetensors"]) {
      expect(fs.readFileSync(path.join(asyncDir, f)).equals(fs.readFileSync(path.join(syncDir, f)))).toBe(true);
    }
    const reloaded = await lora.loadAdapterAsync(seededModel(), asyncDir);
    expect(reloaded.forward(ids()).equal(lm.eval().forward(ids()) as Tensor)).toBe(true);
  });

  test("bad arguments are refused before anything is written", () => {
    const lm = trainedModel({ r: 2, targetModules: ["fc1"] });
    const dir = tmpDir();
    expect(() => lm.saveAdapter(dir, { adapterName: "nope" })).toThrow(/adapterName: no adapter the string "nope" \(adapters: default\)/);
    expect(() => lora.saveAdapter({} as lora.LoraModel, dir)).toThrow(/model: expected a LoraModel/);
    const file = path.join(dir, "file");
    fs.writeFileSync(file, "x");
    expect(() => lm.saveAdapter(file)).toThrow(/exists and is not a directory/);
    expect(fs.readdirSync(dir)).toEqual(["file"]);
  });
});
