/**
 * Target selection errors a user can act on: every `targetModules` list entry must match on
 * injection (a typo is named with the close names), loading an adapter written for another
 * model tolerates absent entries and reports them in `unmatchedTargets`, a string is explained
 * as the full-name regex it is, and a LoRA state dict loaded into a plain model points to
 * mergeAndUnload().
 */
import * as fs from "fs";
import * as path from "path";
import { ConfigError, lora, nn } from "../../lib";
import { LlamaNames } from "../helpers/llama-names";
import { TinyModel } from "../helpers/models";
import { makeTempDir } from "../helpers/temp";

const hasLoraLayers = (m: nn.Module) => m.namedModules().some(([, x]) => x instanceof lora.LoraLayer);
const adapted = (lm: lora.LoraModel) => lm.loraLayers().map(([p]) => p);

describe("injectAdapter is strict per targetModules entry", () => {
  test("a typo beside a valid entry is named, with the close name, and nothing is injected", () => {
    const model = new LlamaNames();
    const call = () => lora.injectAdapter(model, { targetModules: ["q_prj", "v_proj"] });
    expect(call).toThrow(ConfigError);
    expect(call).toThrow(/LoraConfig\.targetModules: "q_prj" matches no Linear\/Embedding module; did you mean "q_proj"\?/);
    expect(hasLoraLayers(model)).toBe(false);
  });

  test("close names are looked for among endings of as many parts as the entry", () => {
    expect(() => lora.injectAdapter(new LlamaNames(), { targetModules: ["self_attn.k_prog", "up_proj"] })).toThrow(/did you mean "self_attn\.k_proj"/);
    expect(() => lora.injectAdapter(new LlamaNames(), { targetModules: ["down_pro", "up_prj"] })).toThrow(
      /"down_pro" matches no Linear\/Embedding module; did you mean "down_proj"\?; "up_prj" matches no Linear\/Embedding module; did you mean "up_proj"\?/,
    );
  });

  test("an entry naming a container says so and lists the layers inside it", () => {
    expect(() => lora.injectAdapter(new LlamaNames(), { targetModules: ["self_attn"] })).toThrow(
      /"self_attn" names a Attention, not a Linear\/Embedding\/Conv1D layer; list the layers inside it, such as "self_attn\.q_proj"/,
    );
  });

  test("an entry with no close name lists the model's modules", () => {
    expect(() => lora.injectAdapter(new LlamaNames(), { targetModules: ["q_proj", "wte"] })).toThrow(
      /"wte" matches no .*the model has: model\.embed_tokens, model\.layers\.0\.self_attn\.q_proj/,
    );
  });

  test('valid lists still select as before; unmatchedTargets: "record" skips and reports instead', () => {
    expect(adapted(lora.injectAdapter(new LlamaNames({ layers: 1 }), { targetModules: ["q_proj", "mlp.up_proj"] }))).toEqual([
      "model.layers.0.self_attn.q_proj",
      "model.layers.0.mlp.up_proj",
    ]);
    const lm = lora.injectAdapter(new LlamaNames({ layers: 1 }), { targetModules: ["q_proj", "gate_proj"] }, "default", { unmatchedTargets: "record" });
    expect(adapted(lm)).toEqual(["model.layers.0.self_attn.q_proj"]);
    expect(lm.unmatchedTargets).toEqual({ default: ["gate_proj"] });
    lm.addAdapter("second", { targetModules: ["v_proj"] });
    expect(lm.unmatchedTargets).toEqual({ default: ["gate_proj"], second: [] });
    lm.deleteAdapter("second");
    expect(lm.unmatchedTargets).toEqual({ default: ["gate_proj"] });
    expect(() => lora.injectAdapter(new LlamaNames(), { targetModules: ["q_proj"] }, "default", { unmatchedTargets: "skip" as "record" })).toThrow(
      /unmatchedTargets: expected "error" or "record"/,
    );
  });
});

describe("loadAdapter tolerates entries absent from this model, and reports them", () => {
  let dir: string;
  beforeAll(() => {
    dir = makeTempDir("tl-targets-");
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test("target_modules written for a model with gate_proj loads here, listing gate_proj in unmatchedTargets", () => {
    const saved = lora.injectAdapter(new LlamaNames(), { targetModules: ["q_proj", "v_proj"], r: 2 });
    const out = path.join(dir, "a");
    saved.saveAdapter(out);
    const configPath = path.join(out, "adapter_config.json");
    const json = JSON.parse(fs.readFileSync(configPath, "utf8"));
    json.target_modules = ["q_proj", "v_proj", "gate_proj", "o_prj"];
    fs.writeFileSync(configPath, JSON.stringify(json));

    const loaded = lora.loadAdapter(new LlamaNames(), out, { adapterName: "tuned" });
    expect(loaded.unmatchedTargets).toEqual({ tuned: ["gate_proj", "o_prj"] });
    expect(adapted(loaded)).toEqual(adapted(saved));
    const [, layer] = loaded.loraLayers()[0];
    expect(layer.factors("tuned")[0].toBytes().equals(saved.loraLayers()[0][1].factors("default")[0].toBytes())).toBe(true);

    // Loading into an existing LoraModel records per adapter.
    const again = lora.loadAdapter(loaded, out, { adapterName: "second" });
    expect(again.unmatchedTargets).toEqual({ tuned: ["gate_proj", "o_prj"], second: ["gate_proj", "o_prj"] });
  });

  test("a config selecting nothing at all is still refused, naming the file", () => {
    const saved = lora.injectAdapter(new LlamaNames(), { targetModules: ["q_proj"], r: 2 });
    const out = path.join(dir, "b");
    saved.saveAdapter(out);
    const configPath = path.join(out, "adapter_config.json");
    const json = JSON.parse(fs.readFileSync(configPath, "utf8"));
    json.target_modules = ["gate_proj"];
    fs.writeFileSync(configPath, JSON.stringify(json));
    expect(() => lora.loadAdapter(new LlamaNames(), out)).toThrow(/adapter_config\.json: target_modules: \["gate_proj"\] matches no Linear\/Embedding module/);
  });
});

describe("a string targetModules matching nothing explains itself", () => {
  test("it says a string is a whole-name regex and suggests the list form", () => {
    const call = () => lora.injectAdapter(new LlamaNames(), { targetModules: "q_proj" });
    expect(call).toThrow(ConfigError);
    expect(call).toThrow(/a string is a regular expression that must match a module's whole dotted name, such as "model\.embed_tokens"/);
    expect(call).toThrow(/to select modules by the end of their name, pass a list: \["q_proj"\]/);
  });
  test("a regex string that is not a plain name gets an example list", () => {
    expect(() => lora.injectAdapter(new LlamaNames(), { targetModules: "(q|v)_proj" })).toThrow(/pass a list: \["embed_tokens"\]/);
  });
});

describe("a LoraModel's state dict loaded into a plain model", () => {
  test("the unexpected-keys error suggests mergeAndUnload()", () => {
    const lm = lora.injectAdapter(new TinyModel(), { targetModules: ["fc1", "emb"] });
    const sd = lm.model.stateDict();
    expect(Object.keys(sd)).toContain("fc1.base_layer.weight");
    expect(() => new TinyModel().loadStateDict(sd)).toThrow(/unexpected keys: .*fc1\.base_layer\.weight.*call mergeAndUnload\(\) on it/);
    // A plain state dict with unrelated extra keys gets no such hint.
    const plain = { ...new TinyModel().stateDict(), "extra.weight": sd["fc1.base_layer.weight"] };
    expect(() => new TinyModel().loadStateDict(plain)).toThrow(/unexpected keys: extra\.weight$/);
  });
});
