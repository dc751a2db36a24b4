/**
 * Models built from a config start as transformers' `_init_weights` leaves them (checked against
 * the formula, within sampling error); `fromPretrained` skips that init for what the checkpoint
 * fills, and `strict: false` loads a checkpoint with missing or unexpected keys, naming them.
 */
import * as path from "path";
import { FormatError, Tensor, io, manualSeed, models, tensor } from "../../lib";
import { native } from "../../lib/binding";
import { meanStd } from "../helpers/stats";
import { tempDir } from "../helpers/temp";

const GPT2 = { model_type: "gpt2", vocab_size: 300, n_positions: 64, n_embd: 64, n_layer: 4, n_head: 4 };
const LLAMA = {
  model_type: "llama",
  vocab_size: 300,
  hidden_size: 64,
  intermediate_size: 96,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  pad_token_id: 0,
  initializer_range: 0.05,
};

const { dir: root, cleanup } = tempDir("tl-models-init-");
afterAll(cleanup);

/** The parameters of `model` whose keys match `pattern`, flattened into one tensor. */
function gather(model: models.CausalLM, pattern: RegExp): Tensor {
  const parts = Object.entries(model.stateDict())
    .filter(([k]) => pattern.test(k))
    .map(([, t]) => t.reshape([-1]));
  expect(parts.length).toBeGreaterThan(0);
  return tensor(parts.flatMap((t) => Array.from(t.toArray() as Float32Array)));
}

/** Mean and std of `t` are those of N(0, std²) within five standard errors. */
function expectNormal(t: Tensor, std: number): void {
  const n = t.numel;
  const s = meanStd(t);
  expect(Math.abs(s.mean)).toBeLessThan((5 * std) / Math.sqrt(n));
  expect(Math.abs(s.std - std)).toBeLessThan((5 * std) / Math.sqrt(2 * n));
}

const allEqual = (t: Tensor, value: number) => (t.toArray() as Float32Array).every((v) => v === value);

describe("init from a config", () => {
  it("GPT-2: weights N(0, 0.02²), c_proj scaled by 1/√(2·n_layer), biases 0, LayerNorm 1 and 0", () => {
    manualSeed(0);
    const m = new models.GPT2LMHeadModel({ ...GPT2, tie_word_embeddings: false });
    const std = 0.02;
    for (const kind of [/wte\.weight$/, /wpe\.weight$/, /c_attn\.weight$/, /c_fc\.weight$/, /^lm_head\.weight$/]) expectNormal(gather(m, kind), std);
    expectNormal(gather(m, /attn\.c_proj\.weight$/), std / Math.sqrt(2 * GPT2.n_layer));
    expectNormal(gather(m, /mlp\.c_proj\.weight$/), std / Math.sqrt(2 * GPT2.n_layer));
    expect(allEqual(gather(m, /(c_attn|c_proj|c_fc)\.bias$/), 0)).toBe(true);
    expect(allEqual(gather(m, /ln_(1|2|f)\.weight$/), 1)).toBe(true);
    expect(allEqual(gather(m, /ln_(1|2|f)\.bias$/), 0)).toBe(true);
  });

  it("Llama: weights N(0, initializer_range²) with the padding row zero, RMSNorm 1", () => {
    manualSeed(0);
    const m = new models.LlamaForCausalLM(LLAMA);
    const std = LLAMA.initializer_range;
    for (const kind of [/_proj\.weight$/, /^lm_head\.weight$/]) expectNormal(gather(m, kind), std);
    const emb = m.stateDict()["model.embed_tokens.weight"];
    expect(allEqual(emb.narrow(0, 0, 1), 0)).toBe(true);
    expectNormal(emb.narrow(0, 1, LLAMA.vocab_size - 1), std);
    expect(allEqual(gather(m, /norm\.weight$/), 1)).toBe(true);
  });

  it("a tied lm_head is the embedding, filled once", () => {
    const m = new models.GPT2LMHeadModel(GPT2);
    const sd = m.stateDict();
    expect(sd["lm_head.weight"].equal(sd["transformer.wte.weight"])).toBe(true);
    expectNormal(sd["transformer.wte.weight"], 0.02);
  });
});

describe("fromPretrained", () => {
  afterEach(() => jest.restoreAllMocks());

  it("does not run the random init the checkpoint overwrites", async () => {
    const src = new models.GPT2LMHeadModel(GPT2);
    const dir = path.join(root, "full");
    await src.savePretrained(dir);
    const normal = jest.spyOn(native, "initNormal");
    const uniform = jest.spyOn(native, "initUniform");
    const kaiming = jest.spyOn(native, "initKaimingUniform");
    const back = await models.fromPretrained(dir);
    expect([normal.mock.calls.length, uniform.mock.calls.length, kaiming.mock.calls.length]).toEqual([0, 0, 0]);
    for (const [k, t] of Object.entries(src.stateDict())) expect([k, back.stateDict()[k].equal(t)]).toEqual([k, true]);
  });

  it("strict (the default) refuses missing and unexpected keys; strict: false loads, initializes the missing ones and names both", async () => {
    const src = new models.GPT2LMHeadModel(GPT2);
    const dir = path.join(root, "partial");
    await src.savePretrained(dir);
    const sd = src.stateDict();
    const dropped = "transformer.h.1.mlp.c_fc.weight";
    const droppedBias = "transformer.h.1.mlp.c_fc.bias";
    const { [dropped]: _w, [droppedBias]: _b, "lm_head.weight": _head, ...kept } = sd;
    await io.saveSafetensors(path.join(dir, "model.safetensors"), { ...kept, "transformer.h.0.extra.weight": sd["transformer.ln_f.weight"] });
    const message = /unexpected keys: transformer.h.0.extra.weight; missing keys: transformer.h.1.mlp.c_fc.weight, transformer.h.1.mlp.c_fc.bias/;
    await expect(models.fromPretrained(dir)).rejects.toThrow(FormatError);
    await expect(models.fromPretrained(dir)).rejects.toThrow(message);
    await expect(models.fromPretrained(dir, { strict: true })).rejects.toThrow(message);
    await expect(models.fromPretrained(dir, { strict: "no" as unknown as boolean })).rejects.toThrow(/options.strict: expected a boolean, got the string "no"/);

    const warn = jest.spyOn(process, "emitWarning").mockImplementation(() => undefined);
    const { model, loadingInfo } = await models.fromPretrained(dir, { strict: false, outputLoadingInfo: true });
    expect(loadingInfo).toEqual({ missingKeys: [dropped, droppedBias], unexpectedKeys: ["transformer.h.0.extra.weight"] });
    expect(warn).toHaveBeenCalledTimes(1);
    expect(String(warn.mock.calls[0][0])).toMatch(/missing keys .*transformer.h.1.mlp.c_fc.weight.*unexpected keys .*transformer.h.0.extra.weight/);
    const back = model.stateDict();
    for (const [k, t] of Object.entries(kept)) expect([k, back[k].equal(t)]).toEqual([k, true]);
    // The missing ones get the config's init, not the uninitialized memory the load skipped filling.
    expectNormal(back[dropped], 0.02);
    expect(allEqual(back[droppedBias], 0)).toBe(true);

    // Without outputLoadingInfo: the model alone, the warning still names the keys.
    const alone = await models.fromPretrained(dir, { strict: false });
    expect(alone).toBeInstanceOf(models.GPT2LMHeadModel);
    expect(warn).toHaveBeenCalledTimes(2);
  });

  it("strict: false still refuses a wrong shape", async () => {
    const src = new models.GPT2LMHeadModel(GPT2);
    const dir = path.join(root, "shape");
    await src.savePretrained(dir);
    const sd = src.stateDict();
    await io.saveSafetensors(path.join(dir, "model.safetensors"), { ...sd, "transformer.ln_f.bias": sd["transformer.ln_f.bias"].narrow(0, 0, 8) });
    await expect(models.fromPretrained(dir, { strict: false })).rejects.toThrow(/transformer.ln_f.bias: shape \[8\] in the checkpoint, \[64\] in the model/);
  });
});
