/**
 * Reading `adapter_config.json`: the text (bad JSON, excess nesting, a non-object), each field
 * PEFT writes mapped to a LoraConfig with its default when absent or null, values of the wrong
 * type refused by PEFT's field name with the exact message, and the checks of the resolved config
 * naming PEFT's fields (`lora_alpha`, `torch_lora.embedding_init_std`), not this library's.
 */
import * as fs from "fs";
import * as path from "path";
import { ConfigError, FormatError, lora } from "../../lib";
import { thrownBy } from "../helpers/errors";
import { cleanupTmp, tmpDir } from "./helpers";

afterAll(cleanupTmp);

const FILE = "adapter/adapter_config.json";
const BASE = { peft_type: "LORA", r: 4, lora_alpha: 8, target_modules: ["fc"] };

/** The LoraConfig read from {@link BASE}: every mapped field present, at its default, and nothing else. */
const BASE_CONFIG: lora.LoraConfig = {
  r: 4,
  loraAlpha: 8,
  loraDropout: 0,
  targetModules: ["fc"],
  useRslora: false,
  fanInFanOut: false,
  initLoraWeights: true,
  bias: "none",
  useDora: false,
};

/** Writes `text` as an adapter_config.json and reads it back with readAdapterConfig; returns what it threw. */
function readError(text: string): { err: Error; file: string } {
  const file = path.join(tmpDir(), "adapter_config.json");
  fs.writeFileSync(file, text);
  return { err: thrownBy(() => lora.readAdapterConfig(file)), file };
}

function configError(json: Record<string, unknown>): ConfigError {
  const err = thrownBy(() => lora.fromPeftConfigJson(json, FILE));
  expect(err).toBeInstanceOf(ConfigError);
  return err as ConfigError;
}

describe("the text of adapter_config.json", () => {
  test("nesting deeper than 64 levels is refused with the offset of the bracket that goes too deep", () => {
    // The object is level 1; 64 brackets inside it reach level 65 at the last of them.
    const prefix = '{"peft_type": "LORA", "r": 4, "target_modules": ["fc"], "deep": ';
    const { err, file } = readError(prefix + "[".repeat(64) + "]".repeat(64) + "}");
    expect(err).toBeInstanceOf(FormatError);
    expect(err.message).toBe(
      `${file}: nests arrays or objects more than 64 levels deep (at character ${prefix.length + 63}); an adapter config has a few levels`,
    );
  });

  test("64 levels are read, and the unknown field is reported as ignored", () => {
    const file = path.join(tmpDir(), "adapter_config.json");
    fs.writeFileSync(file, '{"peft_type": "LORA", "r": 4, "target_modules": ["fc"], "deep": ' + "[".repeat(63) + "]".repeat(63) + "}");
    expect(lora.readAdapterConfig(file).ignoredFields).toEqual(["deep"]);
  });

  test("text that is not JSON is refused with the parser's message", () => {
    const text = '{"peft_type": "LORA", "r": 4,';
    let parserMessage = "";
    try {
      JSON.parse(text);
    } catch (e) {
      parserMessage = (e as Error).message;
    }
    expect(parserMessage).not.toBe("");
    const { err, file } = readError(text);
    expect(err).toBeInstanceOf(FormatError);
    expect(err.message).toBe(`${file}: not valid JSON (${parserMessage})`);
  });

  test.each([
    ["null", "null"],
    ["3", "3"],
    ["true", "true"],
    ['"LORA"', 'the string "LORA"'],
    ["[]", "an array of length 0"],
    ['[{"peft_type": "LORA"}]', "an array of length 1"],
  ])("%s is not a JSON object of fields", (text, described) => {
    const { err, file } = readError(text);
    expect(err).toBeInstanceOf(FormatError);
    expect(err.message).toBe(`${file}: expected a JSON object of PEFT config fields, got ${described}`);
  });
});

describe("fields mapped to LoraConfig", () => {
  test("only what PEFT writes is set: each mapped field at its default, no others", () => {
    const reading = lora.fromPeftConfigJson(BASE, FILE);
    expect(reading.config).toStrictEqual(BASE_CONFIG);
    expect(reading.ignoredFields).toEqual([]);
    expect(reading.inferenceMode).toBeNull();
  });

  test("absent r and lora_alpha are PEFT's defaults, 8 and 8", () => {
    const reading = lora.fromPeftConfigJson({ peft_type: "LORA", target_modules: ["fc"] }, FILE);
    expect(reading.config).toStrictEqual({ ...BASE_CONFIG, r: 8, loraAlpha: 8 });
  });

  test("null is the default for every field that has one", () => {
    const nulls = {
      r: null,
      lora_alpha: null,
      lora_dropout: null,
      use_rslora: null,
      fan_in_fan_out: null,
      init_lora_weights: null,
      use_dora: null,
      exclude_modules: null,
      rank_pattern: null,
      alpha_pattern: null,
      torch_lora: null,
    };
    expect(lora.fromPeftConfigJson({ ...BASE, ...nulls }, FILE).config).toStrictEqual({ ...BASE_CONFIG, r: 8, loraAlpha: 8 });
  });

  test("values given are carried over as they are", () => {
    const json = {
      ...BASE,
      lora_dropout: 0.5,
      use_rslora: true,
      fan_in_fan_out: true,
      use_dora: true,
      exclude_modules: "head.*",
      rank_pattern: { fc: 2 },
      alpha_pattern: { fc: 3 },
    };
    expect(lora.fromPeftConfigJson(json, FILE).config).toStrictEqual({
      ...BASE_CONFIG,
      loraDropout: 0.5,
      useRslora: true,
      fanInFanOut: true,
      useDora: true,
      excludeModules: "head.*",
      rankPattern: { fc: 2 },
      alphaPattern: { fc: 3 },
    });
  });

  test("torch_lora: each key is read only when present", () => {
    const read = (extra: unknown) => lora.fromPeftConfigJson({ ...BASE, torch_lora: extra }, FILE).config;
    expect(read({})).toStrictEqual(BASE_CONFIG);
    expect(read({ embedding_init: "b-normal" })).toStrictEqual({ ...BASE_CONFIG, embeddingInit: "b-normal" });
    expect(read({ embedding_init_std: 0.5 })).toStrictEqual({ ...BASE_CONFIG, embeddingInitStd: 0.5 });
  });

  test.each([true, false, "gaussian", "pissa", "pissa_niter_4", "olora", "orthogonal"])("init_lora_weights = %j is read as given", (init) => {
    expect(lora.fromPeftConfigJson({ ...BASE, init_lora_weights: init }, FILE).config.initLoraWeights).toBe(init);
  });

  test.each(["corda", "loftq", "eva", "true", 1, 0])("init_lora_weights = %j is refused, with what is accepted", (init) => {
    expect(configError({ ...BASE, init_lora_weights: init }).message).toBe(
      `${FILE}: unsupported PEFT config: init_lora_weights = ${JSON.stringify(init)} is not supported; ` +
        `expected true, false, "gaussian", "pissa", "pissa_niter_N", "olora" or "orthogonal" (CorDA, LoftQ and EVA need data or quantization this library lacks)`,
    );
  });

  test.each([
    ["absent", {}],
    ["null", { target_modules: null }],
  ])("target_modules %s is refused (PEFT's own default needs the model type)", (_what, change) => {
    const json: Record<string, unknown> = { ...BASE, ...change };
    if (!("target_modules" in change)) delete json.target_modules;
    expect(configError(json).message).toBe(
      `${FILE}: unsupported PEFT config: target_modules = null is not supported; expected a list of module names or a regex string`,
    );
  });

  test("a missing target_modules is listed with the other problems, after them", () => {
    const json: Record<string, unknown> = { ...BASE, use_qalora: true, init_lora_weights: "corda" };
    delete json.target_modules;
    expect(configError(json).message).toBe(
      `${FILE}: unsupported PEFT config: use_qalora = true is not supported; expected false (QALoRA is not supported); ` +
        `init_lora_weights = "corda" is not supported; expected true, false, "gaussian", "pissa", "pissa_niter_N", "olora" or "orthogonal" ` +
        `(CorDA, LoftQ and EVA need data or quantization this library lacks); ` +
        `target_modules = null is not supported; expected a list of module names or a regex string`,
    );
  });

  test("peft_type other than LORA is refused first, with the field, what was expected and what was given", () => {
    for (const [peftType, described] of [
      [undefined, "undefined"],
      ["lora", 'the string "lora"'],
      ["IA3", 'the string "IA3"'],
    ] as const) {
      const json: Record<string, unknown> = { ...BASE, modules_to_save: ["x"], peft_type: peftType };
      const err = configError(json);
      expect(err.message).toBe(`${FILE}: peft_type: expected "LORA", got ${described} (only LoRA adapters are supported)`);
      expect(err).toMatchObject({ field: "peft_type", expected: '"LORA"', got: peftType });
    }
  });
});

describe("fields accepted only empty", () => {
  // null, [] and {} are empty; a number, a boolean or a string is a value, even one with no entries.
  const EXPECTED: Record<string, string> = {
    modules_to_save: "null (extra fully trained modules are not supported)",
    layers_pattern: "null (layer selection by index is not supported)",
    loftq_config: "{} or null (LoftQ is not supported)",
    target_parameters: "null (targeting bare parameters is not supported)",
  };
  test.each(Object.keys(EXPECTED).flatMap((field) => [0, 3, true, false, ""].map((v) => [field, v] as const)))("%s = %j is refused", (field, value) => {
    expect(configError({ ...BASE, [field]: value }).message).toBe(
      `${FILE}: unsupported PEFT config: ${field} = ${JSON.stringify(value)} is not supported; expected ${EXPECTED[field]}`,
    );
  });
});

describe("values of the wrong type are refused by PEFT's field name", () => {
  const NUMBER_FIELDS = ["r", "lora_alpha", "lora_dropout"];
  test.each(
    NUMBER_FIELDS.flatMap((f) =>
      (
        [
          ["4", 'the string "4"'],
          [true, "true"],
          [[4], "an array of length 1"],
          [{}, "an object"],
          [Infinity, "Infinity"],
          [NaN, "NaN"],
        ] as const
      ).map(([v, d]) => [f, v, d] as const),
    ),
  )("%s = %p: expected a number", (field, value, described) => {
    const err = configError({ ...BASE, [field]: value });
    expect(err.message).toBe(`${FILE}: ${field}: expected a number, got ${described}`);
    expect(err).toMatchObject({ field, expected: "a number", got: value });
  });

  const BOOLEAN_FIELDS = ["use_rslora", "fan_in_fan_out", "use_dora"];
  test.each(
    BOOLEAN_FIELDS.flatMap((f) =>
      (
        [
          ["true", 'the string "true"'],
          [1, "1"],
          [0, "0"],
          [{}, "an object"],
        ] as const
      ).map(([v, d]) => [f, v, d] as const),
    ),
  )("%s = %p: expected true or false", (field, value, described) => {
    const err = configError({ ...BASE, [field]: value });
    expect(err.message).toBe(`${FILE}: ${field}: expected true or false, got ${described}`);
    expect(err).toMatchObject({ field, expected: "true or false", got: value });
  });

  test.each(
    ["rank_pattern", "alpha_pattern"].flatMap((f) =>
      (
        [
          [[], "an array of length 0"],
          ["fc=2", 'the string "fc=2"'],
          [2, "2"],
          [false, "false"],
        ] as const
      ).map(([v, d]) => [f, v, d] as const),
    ),
  )("%s = %p: expected an object of pattern → number", (field, value, described) => {
    const err = configError({ ...BASE, [field]: value });
    expect(err.message).toBe(`${FILE}: ${field}: expected an object of pattern → number, got ${described}`);
    expect(err).toMatchObject({ field, expected: "an object of pattern → number", got: value });
  });

  test.each([
    [[], "an array of length 0"],
    ["b-normal", 'the string "b-normal"'],
    [1, "1"],
    [true, "true"],
  ])("torch_lora = %p: expected an object", (value, described) => {
    const err = configError({ ...BASE, torch_lora: value });
    expect(err.message).toBe(`${FILE}: torch_lora: expected an object, got ${described}`);
    expect(err).toMatchObject({ field: "torch_lora", expected: "an object", got: value });
  });
});

describe("the checks of the resolved config name PEFT's fields", () => {
  /** Writes BASE with `change` as a file and returns readAdapterConfig's ConfigError and the file's path. */
  function resolveError(change: Record<string, unknown>): { err: ConfigError; file: string } {
    const { err, file } = readError(JSON.stringify({ ...BASE, ...change }));
    expect(err).toBeInstanceOf(ConfigError);
    return { err: err as ConfigError, file };
  }

  test.each([
    [{ r: 0 }, "r", "an integer >= 1", "0"],
    [{ r: 2.5 }, "r", "an integer >= 1", "2.5"],
    [{ lora_alpha: 0 }, "lora_alpha", "a finite number > 0", "0"],
    [{ lora_dropout: 1 }, "lora_dropout", "a number in [0, 1)", "1"],
    [{ target_modules: [] }, "target_modules", 'a non-empty list of module names, a regex string, or "all-linear"', "an array of length 0"],
    [{ exclude_modules: [""] }, "exclude_modules", 'a non-empty list of module names, a regex string, or "all-linear"', "an array of length 1"],
    [{ rank_pattern: { fc: 0 } }, 'rank_pattern["fc"]', "an integer >= 1", "0"],
    [{ alpha_pattern: { fc: -1 } }, 'alpha_pattern["fc"]', "a finite number > 0", "-1"],
    [{ torch_lora: { embedding_init: "normal" } }, "torch_lora.embedding_init", '"a-normal" or "b-normal"', 'the string "normal"'],
    [{ torch_lora: { embedding_init_std: 0 } }, "torch_lora.embedding_init_std", "a finite number > 0", "0"],
  ])("%j: %s", (change, field, expected, described) => {
    const { err, file } = resolveError(change);
    expect(err.message).toBe(`${file}: ${field}: expected ${expected}, got ${described}`);
    expect(err.field).toBe(field);
  });

  test("a valid file resolves, with PEFT's fields mapped and the rest at this library's defaults", () => {
    const file = path.join(tmpDir(), "adapter_config.json");
    fs.writeFileSync(file, JSON.stringify({ ...BASE, inference_mode: false, lora_dropout: 0.0, rank_pattern: { fc: 2 }, newer_field: 1 }));
    const reading = lora.readAdapterConfig(file);
    expect(reading.resolved).toStrictEqual({
      r: 4,
      loraAlpha: 8,
      loraDropout: 0,
      targetModules: ["fc"],
      excludeModules: null,
      useRslora: false,
      initLoraWeights: true,
      embeddingInit: "a-normal",
      embeddingInitStd: 1,
      fanInFanOut: false,
      rankPattern: { fc: 2 },
      alphaPattern: {},
      bias: "none",
      useDora: false,
    });
    expect(reading.ignoredFields).toEqual(["newer_field"]);
    expect(reading.inferenceMode).toBe(false);
  });
});
