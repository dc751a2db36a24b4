/**
 * Configuration errors carry the field at fault, what it expected and what it got, under the
 * name the user wrote: LoraConfig's own names for a LoraConfig, PEFT's for an adapter_config.json.
 */
import { ConfigError, FormatError, StateError, TorchLoraError, lora } from "../../lib";
import { resolvePeftConfig } from "../../lib/lora/peft-config";
import { TinyModel } from "../helpers/models";
import { cleanupTmp, pythonStyleConfig, seededModel, tmpDir, writePeftDir } from "../peft/helpers";

afterAll(cleanupTmp);

/** The error `fn` throws (fails the test when it throws none). */
function thrown(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error("expected a ConfigError, none was thrown");
}

describe("structured fields of configuration errors", () => {
  test.each([
    ["r", { r: 0 }, "r", "an integer >= 1", 0, "LoraConfig.r: expected an integer >= 1, got 0"],
    ["loraAlpha", { loraAlpha: "big" }, "loraAlpha", "a finite number > 0", "big", 'LoraConfig.loraAlpha: expected a finite number > 0, got the string "big"'],
    [
      "a rankPattern value",
      { rankPattern: { fc1: 1.5 } },
      'rankPattern["fc1"]',
      "an integer >= 1",
      1.5,
      'LoraConfig.rankPattern["fc1"]: expected an integer >= 1, got 1.5',
    ],
    ["useDora", { useDora: 1 }, "useDora", "a boolean", 1, "LoraConfig.useDora: expected a boolean, got 1"],
    ["bias", { bias: "all" }, "bias", '"none"', "all", 'LoraConfig.bias: only "none" is supported (bias terms stay frozen), got the string "all"'],
  ])("LoraConfig: %s", (_what, fields, field, expected, got, message) => {
    const err = thrown(() => lora.resolveLoraConfig({ targetModules: ["fc1"], ...(fields as object) }));
    expect(err.message).toBe(message);
    expect({ field: err.field, expected: err.expected, got: err.got }).toEqual({ field, expected, got });
  });

  test("a missing targetModules has field targetModules and got undefined", () => {
    const err = thrown(() => lora.resolveLoraConfig({}));
    expect(err.field).toBe("targetModules");
    expect("got" in err).toBe(true);
    expect(err.got).toBeUndefined();
  });

  test.each([
    ["lora_alpha", { lora_alpha: -1 }, "lora_alpha", "a finite number > 0", -1, "cfg.json: lora_alpha: expected a finite number > 0, got -1"],
    ["a lora_alpha of the wrong type", { lora_alpha: "big" }, "lora_alpha", "a number", "big", 'cfg.json: lora_alpha: expected a number, got the string "big"'],
    ["use_rslora", { use_rslora: "yes" }, "use_rslora", "true or false", "yes", 'cfg.json: use_rslora: expected true or false, got the string "yes"'],
    [
      "peft_type",
      { peft_type: "IA3" },
      "peft_type",
      '"LORA"',
      "IA3",
      'cfg.json: peft_type: expected "LORA", got the string "IA3" (only LoRA adapters are supported)',
    ],
    [
      "a rank_pattern value",
      { rank_pattern: { fc1: 0 } },
      'rank_pattern["fc1"]',
      "an integer >= 1",
      0,
      'cfg.json: rank_pattern["fc1"]: expected an integer >= 1, got 0',
    ],
    [
      "torch_lora.embedding_init",
      { torch_lora: { embedding_init: "c-normal" } },
      "torch_lora.embedding_init",
      '"a-normal" or "b-normal"',
      "c-normal",
      'cfg.json: torch_lora.embedding_init: expected "a-normal" or "b-normal", got the string "c-normal"',
    ],
  ])("adapter_config.json: %s is named as PEFT names it", (_what, fields, field, expected, got, message) => {
    const err = thrown(() => resolvePeftConfig({ peft_type: "LORA", target_modules: ["fc1"], ...(fields as object) }, "cfg.json"));
    expect(err.message).toBe(message);
    expect({ field: err.field, expected: err.expected, got: err.got }).toEqual({ field, expected, got });
  });

  test("target modules matching nothing: targetModules on injection, target_modules on loading", () => {
    const injected = thrown(() => lora.injectAdapter(new TinyModel(), { targetModules: "nothing\\d" }));
    expect(injected.message).toMatch(/^LoraConfig\.targetModules: "nothing\\\\d" matches no Linear\/Embedding module/);
    expect(injected.field).toBe("targetModules");
    expect(injected.got).toBe("nothing\\d");

    const dir = tmpDir();
    writePeftDir(dir, {}, pythonStyleConfig({ target_modules: ["absent"] }));
    const loaded = thrown(() => lora.loadAdapter(seededModel(), dir));
    expect(loaded.message).toMatch(/adapter_config\.json: target_modules: \["absent"\] matches no Linear\/Embedding module/);
    expect(loaded.field).toBe("target_modules");
    expect(loaded.got).toEqual(["absent"]);
  });

  test("an error built from a message alone has no fields", () => {
    for (const err of [new ConfigError("x"), new StateError("y"), new FormatError("z"), new TorchLoraError("w")]) {
      expect(err.field).toBeUndefined();
      expect(err.expected).toBeUndefined();
      expect("got" in err).toBe(false);
    }
  });
});
