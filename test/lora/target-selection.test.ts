/**
 * What target selection (lib/lora/targets.ts) picks and says beyond the plain cases: never the
 * model itself nor a LoRA layer's `base_layer`, "all-linear" as Linear and Conv1D without the
 * output layer `lm_head`, and the hint when a string, "all-linear" or an `excludeModules` leaves
 * nothing selected, or a list entry names a container holding no layer.
 */
import { ConfigError, lora, nn } from "../../lib";
import { resolveLoraConfig } from "../../lib/lora/config";
import type { LoraConfig } from "../../lib/lora/config";
import { selectTargets } from "../../lib/lora/targets";

class Block extends nn.Module {
  c_attn = new nn.Conv1D(12, 4);
  fc = new nn.Linear(4, 4);
}

/** GPT-2-like names: an embedding, one block (Conv1D + Linear), a container of no layer, the output layer. */
class Gpt extends nn.Module {
  wte = new nn.Embedding(10, 4);
  h = new nn.Sequential(new Block());
  drop = new nn.Sequential(new nn.ReLU());
  lm_head = new nn.Linear(4, 10);
}

const MODULES = "wte, h.0.c_attn, h.0.fc, lm_head";
const config = (c: LoraConfig) => resolveLoraConfig(c);
const selectedNames = (model: nn.Module, c: LoraConfig) => selectTargets(model, config(c)).selected.map(([p]) => p);

function refusal(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return e as ConfigError;
  }
  throw new Error("expected a ConfigError");
}

describe("what is never selected", () => {
  test("the model itself, even when it is a Linear: injection replaces a module inside its parent", () => {
    const err = refusal(() => lora.injectAdapter(new nn.Linear(2, 2), { targetModules: ".*" }));
    expect(err.message).toBe(
      'LoraConfig.targetModules: ".*" matches no Linear/Embedding module (a string is a regular expression that must match a module\'s whole dotted name, ' +
        'such as "layers.0.q_proj"; to select modules by the end of their name, pass a list: ["q_proj"]); the model has: none',
    );
    expect(err.field).toBe("targetModules");
    expect(err.got).toBe(".*");
  });

  test("the base_layer inside a LoRA layer: the LoRA layer is selected in its place", () => {
    const lm = lora.injectAdapter(new Gpt(), { targetModules: ["fc"] });
    expect(lm.model.namedModules().map(([p]) => p)).toContain("h.0.fc.base_layer");
    expect(selectedNames(lm.model, { targetModules: "all-linear" })).toEqual(["h.0.c_attn", "h.0.fc"]);
    expect(selectedNames(lm.model, { targetModules: ".*" })).toEqual(["wte", "h.0.c_attn", "h.0.fc", "lm_head"]);
    expect(refusal(() => selectTargets(lm.model, config({ targetModules: ["zzzzzzzz"] }))).message).toMatch(new RegExp(`; the model has: ${MODULES}$`));
    // A second adapter on every linear layer goes beside the first one, not inside it.
    lm.addAdapter("second", { targetModules: "all-linear" });
    expect(lm.loraLayers().map(([p, l]) => [p, l.adapterNames])).toEqual([
      ["h.0.c_attn", ["second"]],
      ["h.0.fc", ["default", "second"]],
    ]);
  });
});

describe('"all-linear"', () => {
  test("selects the Linear and Conv1D layers, not the Embedding nor lm_head", () => {
    expect(selectedNames(new Gpt(), { targetModules: "all-linear" })).toEqual(["h.0.c_attn", "h.0.fc"]);
  });

  test("drops only a module named lm_head itself: the layers inside a head container named lm_head stay", () => {
    class Head extends nn.Module {
      dense = new nn.Linear(4, 4);
    }
    class Masked extends nn.Module {
      emb = new nn.Embedding(10, 4);
      dense = new nn.Linear(4, 4);
      lm_head = new Head();
    }
    expect(selectedNames(new Masked(), { targetModules: "all-linear" })).toEqual(["dense", "lm_head.dense"]);
  });

  test("on a model with no linear layer: no hint, the module list", () => {
    class Emb extends nn.Module {
      emb = new nn.Embedding(10, 4);
    }
    expect(refusal(() => selectTargets(new Emb(), config({ targetModules: "all-linear" }))).message).toBe(
      'LoraConfig.targetModules: "all-linear" matches no Linear/Embedding module; the model has: emb',
    );
  });
});

describe("the hint when nothing is selected", () => {
  test("a string of name characters is suggested as a list entry", () => {
    expect(refusal(() => selectTargets(new Gpt(), config({ targetModules: "fc" }))).message).toBe(
      'LoraConfig.targetModules: "fc" matches no Linear/Embedding module (a string is a regular expression that must match a module\'s whole dotted name, ' +
        `such as "wte"; to select modules by the end of their name, pass a list: ["fc"]); the model has: ${MODULES}`,
    );
  });

  test("a string with other regex characters is not; the last part of a module name is", () => {
    expect(refusal(() => selectTargets(new Gpt(), config({ targetModules: "fc.*" }))).message).toBe(
      'LoraConfig.targetModules: "fc.*" matches no Linear/Embedding module (a string is a regular expression that must match a module\'s whole dotted name, ' +
        `such as "wte"; to select modules by the end of their name, pass a list: ["wte"]); the model has: ${MODULES}`,
    );
  });

  test("excludeModules that removes everything targetModules selects is named, for a list and for all-linear", () => {
    const list = refusal(() => selectTargets(new Gpt(), config({ targetModules: ["fc"], excludeModules: ["h.0.fc"] })));
    expect(list.message).toBe(
      `LoraConfig.targetModules: ["fc"] matches no Linear/Embedding module (excludeModules removed every module that targetModules selects); the model has: ${MODULES}`,
    );
    expect(list.field).toBe("targetModules");
    expect(list.got).toEqual(["fc"]);
    expect(refusal(() => selectTargets(new Gpt(), config({ targetModules: "all-linear", excludeModules: "h\\.0\\..*" }))).message).toBe(
      `LoraConfig.targetModules: "all-linear" matches no Linear/Embedding module (excludeModules removed every module that targetModules selects); the model has: ${MODULES}`,
    );
  });

  test("a list matching nothing when unmatched entries are tolerated: no hint", () => {
    expect(refusal(() => selectTargets(new Gpt(), config({ targetModules: ["q_proj"] }), false)).message).toBe(
      `LoraConfig.targetModules: ["q_proj"] matches no Linear/Embedding module; the model has: ${MODULES}`,
    );
  });
});

test("a list entry naming a container with no layer inside says what it is, and lists nothing", () => {
  expect(refusal(() => selectTargets(new Gpt(), config({ targetModules: ["drop"] }))).message).toBe(
    'LoraConfig.targetModules: ["drop"] matches no Linear/Embedding module: "drop" names a Sequential, not a Linear/Embedding/Conv1D layer',
  );
});
