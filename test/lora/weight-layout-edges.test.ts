/**
 * The weight layout of each architecture a merge from files knows, checked against how the
 * transformers implementations build their layers: GPT-2 and openai-gpt store c_attn, q_attn,
 * c_proj and c_fc as `Conv1D` (`(in, out)`); the others use nn.Linear (`(out, in)`) throughout.
 * Also the exact messages of reading `model_type` from a config.json.
 */
import { FormatError, lora } from "../../lib";
import { modelTypeOf } from "../../lib/lora/weight-layout";

/** Architectures whose transformers modelling code uses only nn.Linear for the layers LoRA adapts. */
const LINEAR_ONLY = [
  "bert",
  "bloom",
  "falcon",
  "gemma",
  "gemma2",
  "gpt_bigcode",
  "gpt_neo",
  "gpt_neox",
  "gptj",
  "llama",
  "mistral",
  "mixtral",
  "olmo",
  "opt",
  "phi",
  "phi3",
  "qwen2",
  "qwen2_moe",
  "qwen3",
  "roberta",
  "starcoder2",
  "t5",
];

/** Module paths of a GPT-2 with cross-attention: GPT2Attention's c_attn/q_attn/c_proj and GPT2MLP's c_fc/c_proj are Conv1D. */
const GPT2_CONV1D = [
  "transformer.h.0.attn.c_attn",
  "transformer.h.0.attn.q_attn",
  "transformer.h.0.attn.c_proj",
  "transformer.h.0.mlp.c_fc",
  "transformer.h.0.mlp.c_proj",
  "transformer.h.11.crossattention.c_attn",
  "transformer.h.11.crossattention.q_attn",
  "transformer.h.11.crossattention.c_proj",
];
/** openai-gpt's Attention (c_attn, c_proj) and MLP (c_fc, c_proj) are Conv1D; it has no cross-attention. */
const OPENAI_GPT_CONV1D = ["transformer.h.0.attn.c_attn", "transformer.h.0.attn.c_proj", "transformer.h.0.mlp.c_fc", "transformer.h.0.mlp.c_proj"];
/** Layers that are nn.Linear/Embedding in both, or names that only look like a Conv1D layer's. */
const NOT_CONV1D = [
  "lm_head",
  "transformer.wte",
  "score",
  "transformer.h.0.attn",
  "transformer.h.0.xattn.c_attn",
  "transformer.h.0.attn.c_attn_extra",
  "c_attn",
];

test("KNOWN_MODEL_TYPES lists every architecture with a layout, sorted", () => {
  expect(lora.KNOWN_MODEL_TYPES).toEqual([...LINEAR_ONLY, "gpt2", "openai-gpt"].sort());
  expect(lora.KNOWN_MODEL_TYPES).toEqual([
    "bert",
    "bloom",
    "falcon",
    "gemma",
    "gemma2",
    "gpt2",
    "gpt_bigcode",
    "gpt_neo",
    "gpt_neox",
    "gptj",
    "llama",
    "mistral",
    "mixtral",
    "olmo",
    "openai-gpt",
    "opt",
    "phi",
    "phi3",
    "qwen2",
    "qwen2_moe",
    "qwen3",
    "roberta",
    "starcoder2",
    "t5",
  ]);
});

test.each(LINEAR_ONLY)("%s stores every adapted weight (out, in)", (type) => {
  const layout = lora.layoutFromModelType(type, `config.json model_type ${type}`)!;
  expect(layout.source).toBe(`config.json model_type ${type}`);
  for (const p of ["model.layers.0.self_attn.q_proj", "transformer.h.0.attn.c_attn", "c_proj"]) expect(layout.storedInOut(p)).toBe(false);
});

test("gpt2 stores its Conv1D layers (in, out), at any depth and as a bare path, and nothing else", () => {
  const layout = lora.layoutFromModelType("gpt2", "config.json")!;
  for (const p of GPT2_CONV1D) expect([p, layout.storedInOut(p)]).toEqual([p, true]);
  // The module path may be the suffix itself (a block saved on its own).
  for (const p of [
    "attn.c_attn",
    "attn.q_attn",
    "attn.c_proj",
    "mlp.c_fc",
    "mlp.c_proj",
    "crossattention.c_attn",
    "crossattention.q_attn",
    "crossattention.c_proj",
  ]) {
    expect([p, layout.storedInOut(p)]).toEqual([p, true]);
  }
  for (const p of NOT_CONV1D) expect([p, layout.storedInOut(p)]).toEqual([p, false]);
});

test("openai-gpt stores its Conv1D layers (in, out), and nothing else", () => {
  const layout = lora.layoutFromModelType("openai-gpt", "config.json")!;
  for (const p of OPENAI_GPT_CONV1D) expect([p, layout.storedInOut(p)]).toEqual([p, true]);
  for (const p of [...NOT_CONV1D, "transformer.h.0.attn.q_attn", "transformer.h.0.crossattention.c_attn"])
    expect([p, layout.storedInOut(p)]).toEqual([p, false]);
});

test("an architecture it does not know gives no layout", () => {
  for (const type of ["my_arch", "GPT2", "gpt-2", "", "constructor", "toString", "__proto__", "hasOwnProperty"])
    expect(lora.layoutFromModelType(type, "config.json")).toBeNull();
});

test("uniformLayout and unknownLayout answer the same for every path", () => {
  const conv = lora.uniformLayout(true, "--conv1d");
  const linear = lora.uniformLayout(false, "--no-conv1d");
  const unknown = lora.unknownLayout("no config.json lies beside the base file");
  for (const p of ["a", "h.0.attn.c_attn", ""]) {
    expect(conv.storedInOut(p)).toBe(true);
    expect(linear.storedInOut(p)).toBe(false);
    expect(unknown.storedInOut(p)).toBeNull();
  }
  expect([conv.source, linear.source, unknown.source]).toEqual(["--conv1d", "--no-conv1d", "no config.json lies beside the base file"]);
});

describe("modelTypeOf reads model_type from a config.json's text", () => {
  test("a string model_type, or null when absent or not a string", () => {
    expect(modelTypeOf('{"model_type": "gpt2", "n_embd": 8}', "config.json")).toBe("gpt2");
    expect(modelTypeOf('{"n_embd": 8}', "config.json")).toBeNull();
    expect(modelTypeOf('{"model_type": 2}', "config.json")).toBeNull();
    expect(modelTypeOf('{"model_type": null}', "config.json")).toBeNull();
  });

  test("bad JSON is a FormatError naming the file", () => {
    const call = () => modelTypeOf('{"model_type": gpt2}', "base/config.json");
    expect(call).toThrow(FormatError);
    expect(call).toThrow(/^base\/config\.json: not valid JSON \(.+\)$/);
  });

  test("JSON that is not an object is a FormatError saying what it is", () => {
    const cases: [string, string][] = [
      ["null", "null"],
      ["[1, 2]", "an array of length 2"],
      ['"gpt2"', 'the string "gpt2"'],
      ["3", "3"],
      ["true", "true"],
    ];
    for (const [text, what] of cases) {
      const call = () => modelTypeOf(text, "config.json");
      expect(call).toThrow(FormatError);
      expect(call).toThrow(`config.json: expected a JSON object, got ${what}`);
    }
  });

  test("nesting past 64 levels is a FormatError at the first bracket too deep; 64 levels are read", () => {
    // '{"a":' opens level 1 at offset 0; 63 more '[' reach level 64; the next '[' (offset 5 + 63) opens level 65.
    const deep = '{"a":' + "[".repeat(64) + "]".repeat(64) + ', "model_type": "gpt2"}';
    const call = () => modelTypeOf(deep, "config.json");
    expect(call).toThrow(FormatError);
    expect(call).toThrow("config.json: nests arrays or objects more than 64 levels deep (at character 68)");
    const ok = '{"a":' + "[".repeat(63) + "]".repeat(63) + ', "model_type": "gpt2"}';
    expect(modelTypeOf(ok, "config.json")).toBe("gpt2");
  });
});
