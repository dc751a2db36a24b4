/**
 * Decoding over the transposed head (GenerateOptions.transposedHead): the same tokens as over
 * the head's own weight (a second code path), the copy made once and reused, made again after
 * every kind of write to the weight (an in-place op, an optimizer step, a merged adapter on the
 * tied embedding, a replaced tensor), kept through a caller's tidy(), freed by
 * `transposedHead: false`; and the version counter that tells a write apart.
 */
import { Tensor, lora, memoryStats, models, noGrad, optim, tensor, tidy } from "../../lib";
import { native } from "../../lib/binding";
import { handleOf } from "../../lib/tensor";
import { pseudoRandom } from "../helpers/gradcheck";
import { randomizeFactors } from "../helpers/models";
import { countCalls } from "../helpers/native-calls";
import { TINY_GPT2, TINY_LLAMA } from "./support/tiny-checkpoints";

const GPT2 = TINY_GPT2;
const LLAMA = TINY_LLAMA; // its own head (untied)
const [V, D] = [TINY_LLAMA.vocab_size, TINY_LLAMA.hidden_size];
const PROMPT = [[3, 14, 15, 9, 2]];
const ids = () => tensor(PROMPT, { dtype: "int64" });
const version = (t: Tensor) => native.version(handleOf(t));

/** Greedy tokens both ways: over the transposed head and over the weight itself. */
function bothWays(model: models.CausalLM, maxNewTokens = 8): { transposed: number[]; direct: number[] } {
  const transposed = model.generate(ids(), { maxNewTokens }).toList() as number[];
  const direct = model.generate(ids(), { maxNewTokens, transposedHead: false }).toList() as number[];
  return { transposed, direct };
}

/** How many transposed copies of the head `fn` makes (contiguous copies of a (d, V) view). */
function copiesMade(model: models.CausalLM, fn: () => void): number {
  const c = model.config as unknown as Record<string, number>;
  const columns = [c.n_embd ?? c.hidden_size, c.vocab_size].join();
  return countCalls(["contiguous"], fn, (_name, out) => native.shape(out as never).join() === columns).contiguous;
}

/** Decodes both ways after the head changed, checking that this made exactly one new copy of it. */
function bothWaysRemade(model: models.CausalLM): { transposed: number[]; direct: number[] } {
  let result = { transposed: [] as number[], direct: [] as number[] };
  expect(copiesMade(model, () => (result = bothWays(model)))).toBe(1);
  return result;
}

/** Writes new values into `t` in place. */
function overwrite(t: Tensor, seed: number): void {
  noGrad(() => t.copy_(tensor(pseudoRandom(t.numel, seed), { shape: t.shape }).mul(0.5)));
}

describe("decoding over the transposed head", () => {
  it.each([
    ["GPT-2 (tied head)", () => new models.GPT2LMHeadModel(GPT2)],
    ["Llama (own head)", () => new models.LlamaForCausalLM(LLAMA)],
  ])("%s: the same greedy tokens as over the head's weight, the copy made once for many calls", (_name, make) => {
    const model = make();
    overwrite(model.lm_head.weight, 3); // logits far apart enough that both products pick the same token
    const { transposed, direct } = bothWays(model);
    expect(transposed).toEqual(direct);
    expect(copiesMade(model, () => bothWays(model))).toBe(1);
    expect(copiesMade(model, () => model.generate(ids(), { maxNewTokens: 3 }))).toBe(1);
    expect(copiesMade(model, () => model.generate(ids(), { maxNewTokens: 3 }))).toBe(0);
  });

  it("makes the copy again after an in-place write to the head, and follows the new weights", () => {
    const model = new models.LlamaForCausalLM(LLAMA);
    bothWays(model);
    const before = version(model.lm_head.weight);
    overwrite(model.lm_head.weight, 7);
    expect(version(model.lm_head.weight)).toBeGreaterThan(before);
    const result = bothWaysRemade(model);
    expect(result.transposed).toEqual(result.direct);
  });

  it("after an optimizer step on the tied head, decodes with the stepped weights", () => {
    const model = new models.GPT2LMHeadModel(GPT2);
    bothWays(model);
    const opt = new optim.SGD([model.transformer.wte.weight], { lr: 50 });
    tidy(() => {
      model.loss(tensor([[1, 2, 3, 4, 5, 6, 7, 8]], { dtype: "int64" })).backward();
      opt.step();
    });
    const result = bothWaysRemade(model);
    expect(result.transposed).toEqual(result.direct);
  });

  it("after an adapter on the head is merged into it and unloaded", () => {
    const base = new models.LlamaForCausalLM(LLAMA);
    bothWays(base);
    const lm = lora.injectAdapter(base, { r: 4, loraAlpha: 32, targetModules: ["lm_head"] });
    randomizeFactors(lm, 1);
    const adapted = lm.model.generate(ids(), { maxNewTokens: 8, transposedHead: false }).toList();
    const merged = lm.mergeAndUnload();
    const result = bothWaysRemade(merged);
    expect(result.transposed).toEqual(result.direct);
    expect(result.transposed).toEqual(adapted);
  });

  it("a stream sees the head written between its steps, as decoding over the weight does", async () => {
    const model = new models.LlamaForCausalLM(LLAMA);
    const run = async (transposedHead: boolean, write = true) => {
      overwrite(model.lm_head.weight, 5);
      const tokens: number[] = [];
      for await (const [token] of model.stream(ids(), { maxNewTokens: 6, transposedHead })) {
        tokens.push(token);
        if (tokens.length === 3 && write) overwrite(model.lm_head.weight, 6);
      }
      return tokens;
    };
    const transposed = await run(true);
    expect(transposed).toEqual(await run(false));
    expect(transposed).not.toEqual(await run(true, false)); // the write changed what followed it
  });

  it("makes the copy again when the head's weight is another tensor", () => {
    const model = new models.LlamaForCausalLM(LLAMA);
    bothWays(model);
    model.lm_head.weight = tensor(pseudoRandom(V * D, 11), { shape: [V, D] });
    const result = bothWaysRemade(model);
    expect(result.transposed).toEqual(result.direct);
  });

  it("keeps the copy through a caller's tidy(), and transposedHead: false frees it", () => {
    const model = new models.LlamaForCausalLM(LLAMA);
    tidy(() => model.generate(ids(), { maxNewTokens: 2 }));
    expect(copiesMade(model, () => tidy(() => model.generate(ids(), { maxNewTokens: 2 })))).toBe(0);
    const held = memoryStats();
    model.generate(ids(), { maxNewTokens: 2, transposedHead: false }).dispose();
    const freed = memoryStats();
    // the copy (V × D floats) is gone, give or take what the collector freed meanwhile
    expect(held.liveBytes - freed.liveBytes).toBeGreaterThan(0.9 * V * D * 4);
    expect(copiesMade(model, () => model.generate(ids(), { maxNewTokens: 2 }))).toBe(1);
  });

  it("is skipped for a head under an adapter and for other dtypes: no copy is made", () => {
    const lm = lora.injectAdapter(new models.LlamaForCausalLM(LLAMA), { r: 2, loraAlpha: 4, targetModules: ["lm_head"] });
    expect(copiesMade(lm.model, () => lm.model.generate(ids(), { maxNewTokens: 2 }))).toBe(0);
    const f64 = new models.LlamaForCausalLM(LLAMA, { dtype: "float64" });
    expect(copiesMade(f64, () => f64.generate(ids(), { maxNewTokens: 2 }))).toBe(0);
  });

  it("refuses a transposedHead that is not a boolean", () => {
    const model = new models.GPT2LMHeadModel(GPT2);
    expect(() => model.generate(ids(), { transposedHead: "yes" as never })).toThrow(
      /GPT2LMHeadModel\.generate: transposedHead: expected a boolean, got the string "yes"/,
    );
  });
});
