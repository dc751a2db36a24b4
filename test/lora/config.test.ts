/**
 * resolveLoraConfig and the name helpers of lib/lora/config.ts, directly: every default, every
 * field's refusal with its exact message, and the rank/alpha lookup with rsLoRA scaling.
 */
import { ConfigError } from "../../lib";
import { LoraConfig, layerSettings, matchesModuleName, patternKeyFor, resolveLoraConfig } from "../../lib/lora/config";

const resolve = (c: Partial<LoraConfig>) => resolveLoraConfig({ targetModules: ["q"], ...c } as LoraConfig);

describe("resolveLoraConfig: defaults", () => {
  test("every field gets PEFT's default (a-normal for embeddings, no exclusions)", () => {
    expect(resolve({})).toEqual({
      r: 8,
      loraAlpha: 8,
      loraDropout: 0,
      targetModules: ["q"],
      excludeModules: null,
      useRslora: false,
      initLoraWeights: true,
      embeddingInit: "a-normal",
      embeddingInitStd: 1,
      fanInFanOut: false,
      rankPattern: {},
      alphaPattern: {},
      bias: "none",
      useDora: false,
    });
  });

  test("given values are kept; the name list is copied", () => {
    const names = ["q", "v"];
    const c = resolve({
      r: 4,
      loraAlpha: 16,
      loraDropout: 0.5,
      targetModules: names,
      excludeModules: "x.*",
      useRslora: true,
      initLoraWeights: "gaussian",
      embeddingInit: "b-normal",
      embeddingInitStd: 0.5,
      fanInFanOut: true,
      rankPattern: { q: 2 },
      alphaPattern: { "v|k": 3 },
      bias: "none",
      useDora: true,
    });
    expect(c).toMatchObject({ r: 4, loraAlpha: 16, loraDropout: 0.5, excludeModules: "x.*", useRslora: true, initLoraWeights: "gaussian" });
    expect(c).toMatchObject({
      embeddingInit: "b-normal",
      embeddingInitStd: 0.5,
      fanInFanOut: true,
      rankPattern: { q: 2 },
      alphaPattern: { "v|k": 3 },
      useDora: true,
    });
    expect(c.targetModules).toEqual(names);
    expect(c.targetModules).not.toBe(names);
    expect(resolve({ initLoraWeights: false }).initLoraWeights).toBe(false);
    expect(resolve({ initLoraWeights: "pissa_niter_4" }).initLoraWeights).toBe("pissa_niter_4");
    expect(resolve({ targetModules: "all-linear" }).targetModules).toBe("all-linear");
    expect(resolve({ loraDropout: 0 }).loraDropout).toBe(0);
    expect(resolve({ r: 1, rankPattern: { q: 1 } })).toMatchObject({ r: 1, rankPattern: { q: 1 } });
  });
});

describe("resolveLoraConfig: each refusal names the field, what was expected and what was given", () => {
  const cases: [string, unknown, string][] = [
    ["not an object", null, "LoraConfig: expected an object, got null"],
    ["a number", 3, "LoraConfig: expected an object, got 3"],
    ["no targetModules", { r: 2 }, 'LoraConfig.targetModules: expected a list of module names, a regex string, or "all-linear", got undefined'],
    [
      "an empty targetModules list",
      { targetModules: [] },
      'LoraConfig.targetModules: expected a non-empty list of module names, a regex string, or "all-linear", got an array of length 0',
    ],
    [
      "an empty name in the list",
      { targetModules: ["q", ""] },
      'LoraConfig.targetModules: expected a non-empty list of module names, a regex string, or "all-linear", got an array of length 2',
    ],
    [
      "a number in the list",
      { targetModules: ["q", 3] },
      'LoraConfig.targetModules: expected a non-empty list of module names, a regex string, or "all-linear", got an array of length 2',
    ],
    [
      "a list in the list",
      { targetModules: ["q", ["k"]] },
      'LoraConfig.targetModules: expected a non-empty list of module names, a regex string, or "all-linear", got an array of length 2',
    ],
    [
      "targetModules a number",
      { targetModules: 3 },
      'LoraConfig.targetModules: expected a non-empty list of module names, a regex string, or "all-linear", got 3',
    ],
    [
      "a bad excludeModules",
      { targetModules: ["q"], excludeModules: [] },
      'LoraConfig.excludeModules: expected a non-empty list of module names, a regex string, or "all-linear", got an array of length 0',
    ],
    ["dropout -0.1", { targetModules: ["q"], loraDropout: -0.1 }, "LoraConfig.loraDropout: expected a number in [0, 1), got -0.1"],
    ["dropout as a string", { targetModules: ["q"], loraDropout: "0.1" }, 'LoraConfig.loraDropout: expected a number in [0, 1), got the string "0.1"'],
    ["useRslora 1", { targetModules: ["q"], useRslora: 1 }, "LoraConfig.useRslora: expected a boolean, got 1"],
    ["fanInFanOut a string", { targetModules: ["q"], fanInFanOut: "yes" }, 'LoraConfig.fanInFanOut: expected a boolean, got the string "yes"'],
    ["useDora null", { targetModules: ["q"], useDora: null }, "LoraConfig.useDora: expected a boolean, got null"],
    [
      "initLoraWeights a number",
      { targetModules: ["q"], initLoraWeights: 1 },
      'LoraConfig.initLoraWeights: expected true, false, "gaussian", "pissa", "pissa_niter_N", "olora" or "orthogonal", got 1',
    ],
    ["embeddingInit", { targetModules: ["q"], embeddingInit: "zeros" }, 'LoraConfig.embeddingInit: expected "a-normal" or "b-normal", got the string "zeros"'],
    ["embeddingInitStd 0", { targetModules: ["q"], embeddingInitStd: 0 }, "LoraConfig.embeddingInitStd: expected a finite number > 0, got 0"],
    [
      "embeddingInitStd Infinity",
      { targetModules: ["q"], embeddingInitStd: Infinity },
      "LoraConfig.embeddingInitStd: expected a finite number > 0, got Infinity",
    ],
    [
      "embeddingInitStd a string",
      { targetModules: ["q"], embeddingInitStd: "1" },
      'LoraConfig.embeddingInitStd: expected a finite number > 0, got the string "1"',
    ],
    ["bias", { targetModules: ["q"], bias: "lora_only" }, 'LoraConfig.bias: only "none" is supported (bias terms stay frozen), got the string "lora_only"'],
    ["r a string", { targetModules: ["q"], r: "8" }, 'LoraConfig.r: expected an integer >= 1, got the string "8"'],
    ["r 0", { targetModules: ["q"], r: 0 }, "LoraConfig.r: expected an integer >= 1, got 0"],
    ["loraAlpha a string", { targetModules: ["q"], loraAlpha: "8" }, 'LoraConfig.loraAlpha: expected a finite number > 0, got the string "8"'],
    ["loraAlpha -1", { targetModules: ["q"], loraAlpha: -1 }, "LoraConfig.loraAlpha: expected a finite number > 0, got -1"],
    ["loraAlpha Infinity", { targetModules: ["q"], loraAlpha: Infinity }, "LoraConfig.loraAlpha: expected a finite number > 0, got Infinity"],
    [
      "rankPattern an array",
      { targetModules: ["q"], rankPattern: [] },
      "LoraConfig.rankPattern: expected an object of pattern → number, got an array of length 0",
    ],
    ["rankPattern null", { targetModules: ["q"], rankPattern: null }, "LoraConfig.rankPattern: expected an object of pattern → number, got null"],
    ["rankPattern a number", { targetModules: ["q"], rankPattern: 2 }, "LoraConfig.rankPattern: expected an object of pattern → number, got 2"],
    ["a rankPattern value", { targetModules: ["q"], rankPattern: { q: 0 } }, 'LoraConfig.rankPattern["q"]: expected an integer >= 1, got 0'],
    ["an alphaPattern value", { targetModules: ["q"], alphaPattern: { q: 0 } }, 'LoraConfig.alphaPattern["q"]: expected a finite number > 0, got 0'],
  ];
  test.each(cases)("%s", (_name, config, message) => {
    let thrown: unknown;
    try {
      resolveLoraConfig(config as LoraConfig);
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toBeInstanceOf(ConfigError);
    expect((thrown as Error).message).toBe(message);
  });

  test("an unknown field lists the known ones", () => {
    expect(() => resolve({ lora_alpha: 3 } as never)).toThrow(
      new ConfigError(
        'LoraConfig: unknown field "lora_alpha" (known: r, loraAlpha, loraDropout, targetModules, excludeModules, useRslora, initLoraWeights, embeddingInit, embeddingInitStd, fanInFanOut, rankPattern, alphaPattern, bias, useDora)',
      ),
    );
  });

  test("pattern fields name the field of a bad regex", () => {
    expect(() => resolve({ targetModules: "(" })).toThrow(/^LoraConfig\.targetModules: the string "\(" is not a supported regular expression/);
    expect(() => resolve({ rankPattern: { "(": 2 } })).toThrow(/^LoraConfig\.rankPattern key: the string "\(" is not a supported regular expression/);
    expect(() => resolve({ alphaPattern: { "(": 2 } })).toThrow(/^LoraConfig\.alphaPattern key: the string "\(" is not a supported regular expression/);
  });
});

describe("name matching and per-layer settings", () => {
  test("a list matches the exact name or a dotted suffix, never a bare suffix", () => {
    expect(matchesModuleName(["q"], "q")).toBe(true);
    expect(matchesModuleName(["q"], "layers.0.q")).toBe(true);
    expect(matchesModuleName(["q"], "layers.0.xq")).toBe(false);
    expect(matchesModuleName(["0.q", "v"], "layers.0.q")).toBe(true);
    expect(matchesModuleName("layers\\.\\d\\.q", "layers.0.q")).toBe(true);
    expect(matchesModuleName("q", "layers.0.q")).toBe(false);
  });

  test("a bad pattern met outside a config is named as what it is", () => {
    expect(() => matchesModuleName("(", "q")).toThrow(/^module pattern: the string "\(" is not a supported regular expression/);
    expect(() => patternKeyFor({ "(": 1 }, "q")).toThrow(/^pattern key: the string "\(" is not a supported regular expression/);
  });

  test("the first matching pattern key wins; none gives undefined", () => {
    expect(patternKeyFor({ "layers\\.0\\.q": 2, q: 3 }, "layers.0.q")).toBe("layers\\.0\\.q");
    expect(patternKeyFor({ q: 3 }, "layers.0.q")).toBe("q");
    expect(patternKeyFor({ q: 3 }, "layers.0.v")).toBeUndefined();
  });

  test("rank and alpha come from the patterns, else the config; the scale is alpha/r, or alpha/√r with rsLoRA", () => {
    const c = resolve({ r: 4, loraAlpha: 8, rankPattern: { q: 16 }, alphaPattern: { v: 2 } });
    expect(layerSettings(c, "a.q")).toEqual({ r: 16, alpha: 8, scale: 0.5 });
    expect(layerSettings(c, "a.v")).toEqual({ r: 4, alpha: 2, scale: 0.5 });
    expect(layerSettings(c, "a.k")).toEqual({ r: 4, alpha: 8, scale: 2 });
    const rs = resolve({ r: 4, loraAlpha: 8, useRslora: true, rankPattern: { q: 16 } });
    expect(layerSettings(rs, "a.q")).toEqual({ r: 16, alpha: 8, scale: 2 });
    expect(layerSettings(rs, "a.k")).toEqual({ r: 4, alpha: 8, scale: 4 });
  });
});
