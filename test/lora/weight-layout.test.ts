/**
 * planWeightMerge takes each Linear weight's layout from its shape, and a square weight's from the
 * layout it is given; it refuses a square weight of unknown layout and a layout the shapes
 * contradict. (The command line's use of it is tested in test/cli/cli-safety.test.ts.)
 */
import { ConfigError, lora } from "../../lib";

const linear = (path: string, out: number, inp: number): lora.AdapterModuleInfo => ({
  path,
  kind: "linear",
  r: 2,
  alpha: 4,
  scale: 2,
  keyA: `${path}.A`,
  keyB: `${path}.B`,
  shapeA: [2, inp],
  shapeB: [out, 2],
  dtype: "float32",
});
const weight = (name: string, shape: number[]): lora.TensorShapeInfo => ({ name, shape, dtype: "float32" });

const base = [weight("h.attn.c_attn.weight", [8, 24]), weight("h.attn.c_proj.weight", [8, 8]), weight("score.weight", [8, 8])];
const modules = [linear("h.attn.c_attn", 24, 8), linear("h.attn.c_proj", 8, 8), linear("score", 8, 8)];
const transposed = (plans: lora.PlannedMerge[]) => Object.fromEntries(plans.map((p) => [p.module.path, p.transposed]));

it("non-square weights follow their shape; square ones the architecture", () => {
  const gpt2 = lora.layoutFromModelType("gpt2", "config.json")!;
  expect(transposed(lora.planWeightMerge(base, modules, gpt2, "base"))).toEqual({ "h.attn.c_attn": true, "h.attn.c_proj": true, score: false });
  const pattern = lora.patternLayout("c_attn|c_proj", "--conv1d");
  expect(transposed(lora.planWeightMerge(base, modules, pattern, "base"))).toEqual({ "h.attn.c_attn": true, "h.attn.c_proj": true, score: false });
});

it("a square weight of unknown layout is refused, naming the module and the flags", () => {
  const unknown = lora.unknownLayout("nothing says how");
  expect(() => lora.planWeightMerge(base, modules, unknown, "base")).toThrow(ConfigError);
  expect(() => lora.planWeightMerge(base, modules, unknown, "base")).toThrow(
    /h\.attn\.c_proj\.weight is square \[8, 8\].*module h\.attn\.c_proj.*nothing says how.*--conv1d <regex>.*--no-conv1d/,
  );
  // Non-square alone needs no layout.
  expect(transposed(lora.planWeightMerge(base.slice(0, 1), modules.slice(0, 1), unknown, "base"))).toEqual({ "h.attn.c_attn": true });
});

it("a layout that a non-square shape contradicts is refused", () => {
  expect(() => lora.planWeightMerge(base, modules, false, "base")).toThrow(
    /stores module h\.attn\.c_attn \(in, out\) like Conv1D, but fan_in_fan_out = false says \(out, in\)/,
  );
  expect(() => lora.planWeightMerge(base, modules, lora.layoutFromModelType("llama", "config.json")!, "base")).toThrow(ConfigError);
});

it("architectures it does not know give no layout; a bad --conv1d regex is a ConfigError", () => {
  expect(lora.layoutFromModelType("my-model", "config.json")).toBeNull();
  expect(lora.KNOWN_MODEL_TYPES).toContain("gpt2");
  expect(() => lora.patternLayout("(", "--conv1d")).toThrow(/--conv1d: "\(" is not a valid regular expression/);
});
