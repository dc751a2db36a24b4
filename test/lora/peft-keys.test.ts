/**
 * PEFT's tensor names, written out by hand: a live LoRA layer holds `lora_A.<adapter>.weight` /
 * `lora_B.<adapter>.weight` (Linear factors are modules) and `lora_embedding_A.<adapter>` /
 * `lora_embedding_B.<adapter>` (Embedding factors are bare parameters) beside
 * `base_layer.weight`; PEFT's files drop the adapter name.
 */
import { BASE_LAYER_KEY, MAGNITUDE_KEY, liveLoraKeyPattern, parseSavedFactorKey, SAVED_FACTOR_KEYS } from "../../lib/lora/peft-keys";

const LIVE_KEYS = [
  "h.0.attn.c_attn.base_layer.weight",
  "h.0.attn.c_attn.lora_A.default.weight",
  "h.0.attn.c_attn.lora_B.default.weight",
  "wte.lora_embedding_A.default",
  "wte.lora_embedding_B.default",
  "base_layer.weight",
  "lora_B.default.weight",
];
const PLAIN_KEYS = ["h.0.attn.c_attn.weight", "h.0.attn.c_attn.bias", "wte.weight", "h.0.lora_Bx.default.weight", "h.0.my_lora_B.default.weight"];

test("every key of a live LoRA layer is told from its name, and plain keys are not", () => {
  const pattern = liveLoraKeyPattern();
  for (const k of LIVE_KEYS) expect([k, pattern.test(k)]).toEqual([k, true]);
  for (const k of PLAIN_KEYS) expect([k, pattern.test(k)]).toEqual([k, false]);
});

test("with an adapter name, only the factors of that adapter match, whole name only", () => {
  const pattern = liveLoraKeyPattern("default");
  for (const k of ["fc.lora_A.default.weight", "fc.lora_B.default.weight", "wte.lora_embedding_A.default", "wte.lora_embedding_B.default"]) {
    expect([k, pattern.test(k)]).toEqual([k, true]);
  }
  for (const k of ["fc.lora_A.other.weight", "fc.lora_B.defaults.weight", "wte.lora_embedding_B.default2", "fc.base_layer.weight", "fc.lora_A.weight"]) {
    expect([k, pattern.test(k)]).toEqual([k, false]);
  }
  // An adapter name with regex characters is taken literally.
  expect(liveLoraKeyPattern("a.b").test("fc.lora_A.a.b.weight")).toBe(true);
  expect(liveLoraKeyPattern("a.b").test("fc.lora_A.axb.weight")).toBe(false);
});

test("saved factor keys: PEFT's four suffixes, and what each key says about itself", () => {
  expect(SAVED_FACTOR_KEYS).toEqual(["lora_A.weight", "lora_B.weight", "lora_embedding_A", "lora_embedding_B"]);
  // DoRA's magnitude and the wrapped layer, as PEFT names them.
  expect([MAGNITUDE_KEY, BASE_LAYER_KEY]).toEqual(["lora_magnitude_vector", "base_layer"]);
  expect(parseSavedFactorKey("base_model.model.h.0.attn.c_attn.lora_B.weight")).toEqual({
    modulePath: "base_model.model.h.0.attn.c_attn",
    kind: "linear",
    factor: "B",
  });
  expect(parseSavedFactorKey("base_model.model.wte.lora_embedding_A")).toEqual({ modulePath: "base_model.model.wte", kind: "embedding", factor: "A" });
  expect(parseSavedFactorKey("base_model.model.wte.lora_embedding_B")).toEqual({ modulePath: "base_model.model.wte", kind: "embedding", factor: "B" });
  for (const k of ["base_model.model.fc.lora_magnitude_vector", "fc.lora_A.default.weight", "lora_A.weight", "fc.weight"])
    expect(parseSavedFactorKey(k)).toBeNull();
});
