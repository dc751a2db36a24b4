/**
 * convertToPlainLora on small hand-written factors: A' = [A; A₀] (rows), B' = [B, −B₀] (columns),
 * r and lora_alpha doubled (alpha ×√2 with rsLoRA), other tensors passed through; and the exact
 * message of every refusal.
 */
import * as path from "path";
import { ConfigError, FormatError, Tensor, io, lora, tensor } from "../../lib";
import { tempDirs } from "../helpers/temp";

const { make: tmp, cleanup } = tempDirs("tl-convert-edges-");
afterAll(cleanup);

const KEY_A = "base_model.model.q.lora_A.weight";
const KEY_B = "base_model.model.q.lora_B.weight";
const KEY_EMB_A = "base_model.model.wte.lora_embedding_A";

/** A directory holding a step-0 adapter with the given tensors. */
function initialDir(tensors: Record<string, Tensor>): string {
  const dir = tmp();
  io.saveSafetensorsSync(path.join(dir, "adapter_model.safetensors"), tensors);
  return dir;
}

const json = (extra: Record<string, unknown> = {}) => ({ r: 1, lora_alpha: 2, target_modules: ["q"], rank_pattern: {}, alpha_pattern: {}, ...extra });

describe("convertToPlainLora by hand", () => {
  // Trained A (r=1, in=2), B (out=2, r=1); initial A₀, B₀.
  const trained = () =>
    new Map<string, Tensor>([
      [KEY_A, tensor([[1, 2]])],
      [KEY_B, tensor([[5], [6]])],
    ]);

  test("A' stacks A over A₀, B' puts −B₀ beside B, and the config doubles r and lora_alpha", () => {
    const dir = initialDir({ [KEY_A]: tensor([[3, 4]]), [KEY_B]: tensor([[7], [8]]) });
    const { tensors, json: out } = lora.convertToPlainLora(trained(), json({ rank_pattern: { q: 3 }, alpha_pattern: { q: 5 } }), dir);
    expect([...tensors.keys()]).toEqual([KEY_A, KEY_B]);
    expect(tensors.get(KEY_A)!.shape).toEqual([2, 2]);
    expect(tensors.get(KEY_A)!.toList()).toEqual([1, 2, 3, 4]);
    expect(tensors.get(KEY_B)!.shape).toEqual([2, 2]);
    expect(tensors.get(KEY_B)!.toList()).toEqual([5, -7, 6, -8]);
    expect(out).toEqual({ r: 2, lora_alpha: 4, target_modules: ["q"], rank_pattern: { q: 6 }, alpha_pattern: { q: 10 }, init_lora_weights: true });
  });

  test("with rsLoRA lora_alpha is multiplied by √2, so alpha/√r stays the same", () => {
    const dir = initialDir({ [KEY_A]: tensor([[3, 4]]), [KEY_B]: tensor([[7], [8]]) });
    const { json: out } = lora.convertToPlainLora(trained(), json({ use_rslora: true }), dir);
    expect(out.r).toBe(2);
    expect(out.lora_alpha).toBeCloseTo(2 * Math.SQRT2, 12);
    expect((out.lora_alpha as number) / Math.sqrt(out.r as number)).toBeCloseTo(2 / Math.sqrt(1), 12);
  });

  test("initial factors saved in float64 are converted to the adapter's float32", () => {
    const dir = initialDir({ [KEY_A]: tensor([[3, 4]], { dtype: "float64" }), [KEY_B]: tensor([[7], [8]], { dtype: "float64" }) });
    const { tensors } = lora.convertToPlainLora(trained(), json(), dir);
    expect(tensors.get(KEY_A)!.dtype).toBe("float32");
    expect(tensors.get(KEY_B)!.dtype).toBe("float32");
    expect(tensors.get(KEY_B)!.toList()).toEqual([5, -7, 6, -8]);
  });

  test("a tensor that is not a LoRA factor is passed through as it is, with no initial counterpart needed", () => {
    const dir = initialDir({ [KEY_A]: tensor([[3, 4]]), [KEY_B]: tensor([[7], [8]]) });
    const head = tensor([[9, 9]]);
    const input = trained().set("base_model.model.head.weight", head);
    const { tensors } = lora.convertToPlainLora(input, json(), dir);
    expect(tensors.get("base_model.model.head.weight")).toBe(head);
  });

  test("factors missing from the initial adapter or of another shape are all named, joined by '; '", () => {
    const dir = initialDir({ [KEY_A]: tensor([[3, 4, 5]]) });
    const input = trained().set(KEY_EMB_A, tensor([[1, 1]]));
    const call = () => lora.convertToPlainLora(input, json(), dir);
    expect(call).toThrow(FormatError);
    expect(call).toThrow(
      `${path.join(dir, "adapter_model.safetensors")}: does not match the adapter being saved: ` +
        `${KEY_A} has shape [1, 3], the adapter [1, 2]; ${KEY_B} is missing; ${KEY_EMB_A} is missing`,
    );
  });
});

describe("convertToPlainLora refusals, before anything is read", () => {
  const none = new Map<string, Tensor>();

  test("the initial directory must be a non-empty string", () => {
    for (const [dir, what] of [
      ["", 'the string ""'],
      [5, "5"],
      [undefined, "undefined"],
    ] as const) {
      const call = () => lora.convertToPlainLora(none, json(), dir as unknown as string);
      expect(call).toThrow(TypeError);
      expect(call).toThrow(`pathInitialModelForWeightConversion: expected the directory of the adapter saved before training, got ${what}`);
    }
  });

  test("a directory without adapter_model.safetensors is a FormatError saying how to make it", () => {
    const dir = tmp();
    const file = path.join(dir, "adapter_model.safetensors");
    const call = () => lora.convertToPlainLora(none, json(), dir);
    expect(call).toThrow(FormatError);
    expect(call).toThrow(`pathInitialModelForWeightConversion: ${file} is missing (save the adapter right after injecting it, before training, into ${dir})`);
  });

  test("rsLoRA with a rank or an alpha pattern is a ConfigError; either pattern alone is enough", () => {
    const message = "pathInitialModelForWeightConversion: not supported for an adapter using rsLoRA together with rankPattern or alphaPattern (as in PEFT)";
    for (const patterns of [{ rank_pattern: { q: 2 } }, { alpha_pattern: { q: 4 } }, { rank_pattern: undefined, alpha_pattern: { q: 4 } }]) {
      const call = () => lora.convertToPlainLora(none, json({ use_rslora: true, ...patterns }), "/nonexistent");
      expect(call).toThrow(ConfigError);
      expect(call).toThrow(message);
    }
  });

  test("a DoRA adapter is a ConfigError", () => {
    const call = () => lora.convertToPlainLora(none, json({ use_dora: true }), "/nonexistent");
    expect(call).toThrow(ConfigError);
    expect(call).toThrow("pathInitialModelForWeightConversion: not supported for a DoRA adapter (its magnitude was fitted to the residual base)");
  });
});
