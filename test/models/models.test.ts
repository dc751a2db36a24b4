/**
 * The model classes on their own: configs (defaults, refusals by name), module trees and keys,
 * saving and loading (sharded, keys named), masks and positions under left padding, the KV
 * cache against full recomputation, sampling, and LoRA's rules on these models.
 */
import * as fs from "fs";
import * as path from "path";
import { ConfigError, FormatError, Tensor, cat, io, lora, manualSeed, models, noGrad, tensor } from "../../lib";
import { makeTempDir } from "../helpers/temp";

const GPT2 = { model_type: "gpt2", vocab_size: 40, n_positions: 24, n_embd: 16, n_layer: 2, n_head: 4 };
const LLAMA = {
  model_type: "llama",
  vocab_size: 37,
  hidden_size: 16,
  intermediate_size: 24,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
};

let root: string;
beforeAll(() => {
  root = makeTempDir("tl-models-unit-");
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const int64 = (rows: number[][]) => tensor(rows, { dtype: "int64" });

describe("configs", () => {
  it("apply transformers' defaults", () => {
    const g = new models.GPT2Config({});
    expect([g.n_embd, g.n_layer, g.n_head, g.n_inner, g.vocab_size, g.layer_norm_epsilon, g.activation_function]).toEqual([
      768,
      12,
      12,
      3072,
      50257,
      1e-5,
      "gelu_new",
    ]);
    const l = new models.LlamaConfig({ hidden_size: 64, num_attention_heads: 8 });
    expect([l.num_key_value_heads, l.head_dim, l.rope_theta, l.tie_word_embeddings, l.qkv_bias]).toEqual([8, 8, 10000, false, false]);
    expect(new models.LlamaConfig({ model_type: "qwen2", hidden_size: 64, num_attention_heads: 8 }).qkv_bias).toBe(true);
    expect(new models.LlamaConfig({ model_type: "qwen2", hidden_size: 64, num_attention_heads: 8 }).o_proj_bias).toBe(false);
  });

  it("refuse bad and unimplemented fields by name", () => {
    expect(() => new models.LlamaConfig({ ...LLAMA, rope_scaling: { rope_type: "yarn", factor: 2 } })).toThrow(
      'LlamaConfig.rope_scaling.rope_type: RoPE scaling of type the string "yarn" is not implemented (only "default", "linear" and "llama3")',
    );
    expect(() => new models.LlamaConfig({ ...LLAMA, num_key_value_heads: 3 })).toThrow(ConfigError);
    expect(() => new models.LlamaConfig({ ...LLAMA, num_key_value_heads: 3 })).toThrow(/num_key_value_heads: 3 must divide num_attention_heads \(4\)/);
    expect(() => new models.LlamaConfig({ ...LLAMA, hidden_act: "gelu" })).toThrow(/hidden_act/);
    expect(() => new models.LlamaConfig({ ...LLAMA, model_type: "falcon" })).toThrow(/model_type: expected one of llama, mistral, qwen2/);
    // A name every object inherits is not an architecture either.
    for (const type of ["constructor", "toString", "__proto__"]) {
      expect(() => new models.LlamaConfig({ ...LLAMA, model_type: type })).toThrow(
        `LlamaConfig.model_type: expected one of llama, mistral, qwen2, got the string "${type}"`,
      );
    }
    expect(() => new models.GPT2Config({ ...GPT2, n_head: 5 })).toThrow(/n_embd: 16 must be a multiple of n_head \(5\)/);
    expect(() => new models.GPT2Config({ ...GPT2, activation_function: "quick_gelu" })).toThrow(/activation_function/);
    expect(() => new models.GPT2Config({ ...GPT2, add_cross_attention: true })).toThrow(/add_cross_attention/);
    expect(() => new models.GPT2Config({ ...GPT2, n_layer: "2" })).toThrow(/GPT2Config.n_layer: expected a positive integer, got the string "2"/);
  });

  it("RoPE from rope_parameters (transformers 5) or rope_theta and rope_scaling: base and scaling read; other types, a second base that differs, bad fields refused by name", () => {
    const rope = (extra: Record<string, unknown>) => {
      const c = new models.LlamaConfig({ ...LLAMA, ...extra });
      return [c.rope_theta, c.rope_scaling];
    };
    const plain = { rope_type: "default" };
    expect(rope({ rope_parameters: { rope_type: "default", rope_theta: 500000 } })).toEqual([500000, plain]);
    expect(rope({ rope_parameters: { rope_type: "default", rope_theta: 500000 }, rope_theta: 500000 })).toEqual([500000, plain]);
    expect(rope({ rope_parameters: { rope_type: "default" }, rope_theta: 250000 })).toEqual([250000, plain]);
    expect(rope({ rope_parameters: null, rope_theta: 250000 })).toEqual([250000, plain]);
    expect(rope({ rope_parameters: { rope_type: "linear", factor: 4, rope_theta: 1e4 } })).toEqual([1e4, { rope_type: "linear", factor: 4 }]);
    expect(rope({ rope_scaling: { type: "linear", factor: 2 }, rope_theta: 3e4 })).toEqual([3e4, { rope_type: "linear", factor: 2 }]);
    // Llama 3.1's published config (transformers 4 layout), and the window taken from the file when the scaling omits it.
    const llama3 = { rope_type: "llama3", factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 };
    expect(rope({ rope_scaling: llama3, rope_theta: 500000 })).toEqual([500000, llama3]);
    const { original_max_position_embeddings: _o, ...withoutWindow } = llama3;
    expect(rope({ rope_parameters: { ...withoutWindow, rope_theta: 5e5 }, max_position_embeddings: 4096 })[1]).toEqual({
      ...llama3,
      original_max_position_embeddings: 4096,
    });
    expect(() => rope({ rope_parameters: { rope_type: "yarn", rope_theta: 500000, factor: 8 } })).toThrow(
      'LlamaConfig.rope_parameters.rope_type: RoPE scaling of type the string "yarn" is not implemented (only "default", "linear" and "llama3")',
    );
    expect(() => rope({ rope_parameters: { rope_type: "linear" } })).toThrow(
      'LlamaConfig.rope_parameters.factor: expected a number > 0 for RoPE scaling of type the string "linear", got undefined',
    );
    expect(() => rope({ rope_scaling: { ...llama3, high_freq_factor: 1 } })).toThrow(
      "LlamaConfig.rope_scaling.high_freq_factor: expected a number > low_freq_factor (1), got 1",
    );
    expect(() => rope({ rope_parameters: { rope_type: "default", rope_theta: 500000 }, rope_theta: 10000 })).toThrow(
      "LlamaConfig.rope_parameters.rope_theta: 500000 differs from the file's rope_theta (10000); which one applies is ambiguous",
    );
    expect(() => rope({ rope_parameters: { rope_theta: -1 } })).toThrow("LlamaConfig.rope_parameters.rope_theta: expected a number > 0, got -1");
    expect(() => rope({ rope_parameters: [500000] })).toThrow(ConfigError);
    expect(() => rope({ rope_parameters: "default" })).toThrow('LlamaConfig.rope_parameters: expected an object { rope_type, ... }, got the string "default"');
    // The file's own fields are written back as they were; the parsed scaling is not added.
    expect(new models.LlamaConfig({ ...LLAMA, rope_parameters: { rope_type: "default", rope_theta: 5e5 } }).toJSON()).not.toHaveProperty("rope_scaling");
  });

  it("a sliding window shorter than the sequence is refused by name; within it, attention is plain causal", () => {
    const m = new models.LlamaForCausalLM({ ...LLAMA, model_type: "mistral", sliding_window: 4 });
    expect(() => m.forward(int64([[1, 2, 3, 4, 5]]))).toThrow(/sliding_window \(4\)/);
    expect(m.forward(int64([[1, 2, 3, 4]])).shape).toEqual([1, 4, 37]);
  });
});

describe("module trees", () => {
  it("GPT-2 has transformers' keys, Conv1D weights stored (in, out), lm_head tied to wte", () => {
    const m = new models.GPT2LMHeadModel(GPT2);
    const sd = m.stateDict();
    expect(sd["transformer.h.1.attn.c_attn.weight"].shape).toEqual([16, 48]);
    expect(sd["transformer.h.0.mlp.c_fc.weight"].shape).toEqual([16, 64]);
    expect(Object.keys(sd).filter((k) => !k.startsWith("transformer.h."))).toEqual([
      "transformer.wte.weight",
      "transformer.wpe.weight",
      "transformer.ln_f.weight",
      "transformer.ln_f.bias",
      "lm_head.weight",
    ]);
    expect(m.lm_head.weight).toBe(m.transformer.wte.weight);
    expect(m.parameters()).toHaveLength(Object.keys(sd).length - 1);
  });

  it("Llama has transformers' keys; rotary tables are not state; tie_word_embeddings ties lm_head", () => {
    const m = new models.LlamaForCausalLM({ ...LLAMA, head_dim: 6, attention_bias: true });
    const sd = m.stateDict();
    expect(sd["model.layers.0.self_attn.q_proj.weight"].shape).toEqual([24, 16]);
    expect(sd["model.layers.0.self_attn.k_proj.weight"].shape).toEqual([12, 16]);
    expect(sd["model.layers.0.self_attn.o_proj.bias"].shape).toEqual([16]);
    expect(Object.keys(sd)).not.toContain("model.rotary_emb.inv_freq");
    expect(m.lm_head.weight).not.toBe(m.model.embed_tokens.weight);
    const tied = new models.LlamaForCausalLM({ ...LLAMA, tie_word_embeddings: true });
    expect(tied.lm_head.weight).toBe(tied.model.embed_tokens.weight);
  });
});

describe.each([
  ["gpt2", GPT2],
  ["llama", LLAMA],
])("%s: masks, positions and the cache", (_name, config) => {
  // Seeded: greedy decoding of a random model meets near-ties, where the cached and the full
  // computation may round apart; a fixed model keeps the comparison deterministic.
  const build = () => {
    manualSeed(5);
    return models.modelFromConfig(config).eval();
  };

  it("a left-padded row gives the logits of the same row unpadded", () => {
    const m = build();
    const alone = m.forward(int64([[5, 6, 7]]));
    const padded = m.forward(
      int64([
        [0, 0, 5, 6, 7],
        [1, 2, 3, 4, 5],
      ]),
      {
        attentionMask: int64([
          [0, 0, 1, 1, 1],
          [1, 1, 1, 1, 1],
        ]),
      },
    );
    expect(padded.narrow(0, 0, 1).narrow(1, 2, 3).allclose(alone, { rtol: 1e-5, atol: 1e-5 })).toBe(true);
  });

  it("logitsToKeep k gives the logits of the last k positions of the whole forward; a count outside [0, T] is refused", () => {
    const m = build();
    const ids = int64([
      [3, 1, 4, 1, 5],
      [9, 2, 6, 5, 3],
    ]);
    const whole = m.forward(ids);
    for (const k of [1, 2, 5]) expect(m.forward(ids, { logitsToKeep: k }).equal(whole.narrow(1, 5 - k, k))).toBe(true);
    expect(m.forward(ids, { logitsToKeep: 0 }).equal(whole)).toBe(true);
    const name = m instanceof models.GPT2LMHeadModel ? "GPT2LMHeadModel" : "LlamaForCausalLM";
    for (const bad of [6, -1, 1.5, "1"]) {
      expect(() => m.forward(ids, { logitsToKeep: bad as number })).toThrow(
        `${name}.forward: logitsToKeep: expected an integer in [0, 5] (0 keeps every position), got ${typeof bad === "string" ? 'the string "1"' : bad}`,
      );
    }
  });

  it("a forward in pieces through the KV cache equals the forward over the whole sequence", () => {
    const m = build();
    const ids = int64([[3, 1, 4, 1, 5, 9, 2]]);
    const whole = m.forward(ids);
    const cache = new models.KVCache(2);
    const first = m.forward(ids.narrow(1, 0, 4), { cache });
    const second = m.forward(ids.narrow(1, 4, 3), { cache });
    expect(cache.length).toBe(7);
    expect(cat([first, second], 1).allclose(whole, { rtol: 1e-5, atol: 1e-5 })).toBe(true);
    cache.dispose();
  });

  it("greedy generate equals the argmax loop without a cache; eos stops a row and pads it", () => {
    const m = build();
    const prompt = int64([
      [0, 2, 3],
      [4, 5, 6],
    ]);
    const attentionMask = int64([
      [0, 1, 1],
      [1, 1, 1],
    ]);
    const out = m.generate(prompt, { maxNewTokens: 5, attentionMask });
    let cur = prompt;
    let mask = attentionMask;
    noGrad(() => {
      for (let i = 0; i < 5; i++) {
        const logits = m.forward(cur, { attentionMask: mask });
        const next = logits
          .narrow(1, cur.shape[1] - 1, 1)
          .squeeze(1)
          .argmax(-1)
          .unsqueeze(1);
        cur = cat([cur, next], 1);
        mask = cat([mask, int64([[1], [1]])], 1);
      }
    });
    expect(out.toList()).toEqual(cur.toList());
    const firstOfRow0 = (out.toList() as number[])[3];
    const stopped = m.generate(prompt, { maxNewTokens: 5, attentionMask, eosTokenId: firstOfRow0, padTokenId: 0 });
    expect((stopped.toList() as number[]).slice(3, 8)).toEqual([firstOfRow0, 0, 0, 0, 0]);
  });

  it("sampling repeats under manualSeed; topK 1 is greedy; options are checked", () => {
    const m = build();
    const prompt = int64([[1, 2, 3]]);
    manualSeed(11);
    const a = m.generate(prompt, { maxNewTokens: 8, temperature: 1.3, topP: 0.9 }).toList();
    manualSeed(11);
    const b = m.generate(prompt, { maxNewTokens: 8, temperature: 1.3, topP: 0.9 }).toList();
    expect(a).toEqual(b);
    expect(m.generate(prompt, { maxNewTokens: 6, topK: 1, temperature: 0.7 }).toList()).toEqual(m.generate(prompt, { maxNewTokens: 6 }).toList());
    expect(() => m.generate(prompt, { topP: 0 })).toThrow(/topP: expected a number in \(0, 1\]/);
    expect(() => m.generate(prompt, { maxNewTokens: -1 })).toThrow(/maxNewTokens/);
    expect(m.training).toBe(false);
  });
});

describe("streaming", () => {
  it("yields the tokens generate returns, and stops cleanly when the consumer breaks off", async () => {
    manualSeed(5);
    const m = new models.GPT2LMHeadModel(GPT2).eval();
    const prompt = int64([[1, 2, 3]]);
    const all = (m.generate(prompt, { maxNewTokens: 6 }).toList() as number[]).slice(3);
    const got: number[] = [];
    for await (const [t] of m.stream(prompt, { maxNewTokens: 6 })) got.push(t);
    expect(got).toEqual(all);
    const firstTwo: number[] = [];
    for await (const [t] of m.stream(prompt, { maxNewTokens: 6 })) {
      firstTwo.push(t);
      if (firstTwo.length === 2) break;
    }
    expect(firstTwo).toEqual(all.slice(0, 2));
    expect(m.generate(prompt, { maxNewTokens: 6 }).toList()).toEqual([1, 2, 3, ...all]);
  });
});

describe("savePretrained and fromPretrained", () => {
  it("round-trip in one file and in shards; a tied lm_head is not written", async () => {
    const m = new models.GPT2LMHeadModel(GPT2);
    const ids = int64([[1, 2, 3, 4]]);
    m.eval();
    const one = path.join(root, "one");
    await m.savePretrained(one);
    expect(fs.readdirSync(one).sort()).toEqual(["config.json", "model.safetensors"]);
    expect(Object.keys((await io.readSafetensorsHeader(path.join(one, "model.safetensors"))).tensors.map((t) => t.name))).not.toContain("lm_head.weight");
    const sharded = path.join(root, "sharded");
    await m.savePretrained(sharded, { maxShardSize: 8000 });
    const index = JSON.parse(fs.readFileSync(path.join(sharded, "model.safetensors.index.json"), "utf8"));
    const shards = new Set(Object.values(index.weight_map));
    expect(shards.size).toBeGreaterThan(2);
    expect(Object.keys(index.weight_map)).not.toContain("lm_head.weight");
    for (const dir of [one, sharded]) {
      const back = await models.fromPretrained(dir);
      expect(back).toBeInstanceOf(models.GPT2LMHeadModel);
      expect(back.forward(ids).equal(m.forward(ids))).toBe(true);
    }
    // Saving one file over a sharded folder leaves no stale shard behind.
    await m.savePretrained(sharded);
    expect(fs.readdirSync(sharded).sort()).toEqual(["config.json", "model.safetensors"]);
  });

  it("casts to the dtype asked for", async () => {
    const dir = path.join(root, "llama");
    await new models.LlamaForCausalLM(LLAMA).savePretrained(dir);
    const m = await models.fromPretrained(dir, { dtype: "bfloat16" });
    expect(new Set(m.parameters().map((p) => p.dtype))).toEqual(new Set(["bfloat16"]));
    expect(m.forward(int64([[1, 2]])).dtype).toBe("bfloat16");
  });

  it("names missing and unexpected keys and wrong shapes, and unknown model types", async () => {
    const src = new models.LlamaForCausalLM(LLAMA);
    const dir = path.join(root, "broken");
    await src.savePretrained(dir);
    const sd = src.stateDict();
    delete sd["model.norm.weight"];
    sd["model.layers.0.extra.weight"] = sd["lm_head.weight"];
    await io.saveSafetensors(path.join(dir, "model.safetensors"), sd);
    await expect(models.fromPretrained(dir)).rejects.toThrow(FormatError);
    await expect(models.fromPretrained(dir)).rejects.toThrow(/unexpected keys: model.layers.0.extra.weight; missing keys: model.norm.weight/);
    fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify({ ...LLAMA, hidden_size: 8, num_attention_heads: 2 }));
    await expect(models.fromPretrained(dir)).rejects.toThrow(/model.embed_tokens.weight: shape \[37, 16\] in the checkpoint, \[37, 8\] in the model/);
    fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify({ model_type: "t5" }));
    await expect(models.fromPretrained(dir)).rejects.toThrow(/model_type: expected one of gpt2, llama, mistral, qwen2, got the string "t5"/);
    fs.rmSync(path.join(dir, "model.safetensors"));
    fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify(LLAMA));
    await expect(models.fromPretrained(dir)).rejects.toThrow(/holds neither model.safetensors nor model.safetensors.index.json/);
  });
});

describe("LoRA on these models", () => {
  it("Conv1D layers get fan_in_fan_out: the adapted c_attn equals the base plus x·(BA)ᵀ·scale", () => {
    const m = new models.GPT2LMHeadModel(GPT2).eval();
    const peft = lora.injectAdapter(m, { r: 2, loraAlpha: 4 });
    const [[p, layer]] = peft.loraLayers();
    expect(p).toBe("transformer.h.0.attn.c_attn");
    const [A, B] = layer.factors("default");
    noGrad(() =>
      B.copy_(
        tensor(
          Array.from({ length: B.numel }, (_, i) => Math.sin(i)),
          { shape: B.shape },
        ),
      ),
    );
    const x = tensor(
      Array.from({ length: 16 }, (_, i) => Math.cos(i)),
      { shape: [1, 16] },
    );
    const base = layer.base_layer as unknown as { weight: Tensor; bias: Tensor };
    const expected = x.matmul(base.weight).add(base.bias).add(x.matmul(A.t()).matmul(B.t()).mul(2));
    expect((layer.forward(x) as Tensor).allclose(expected, { rtol: 1e-5, atol: 1e-6 })).toBe(true);
  });

  it("a model without a model_type still needs targetModules", () => {
    const plain = new models.GPT2LMHeadModel(GPT2).transformer;
    expect(() => lora.injectAdapter(plain, { r: 2 })).toThrow(/targetModules: .*no config.model_type/);
  });

  it("an adapter on GPT-2's tied embedding is refused at merge, naming lm_head", () => {
    const m = new models.GPT2LMHeadModel(GPT2);
    const peft = lora.injectAdapter(m, { r: 2, targetModules: ["wte"] });
    expect(() => peft.mergeAndUnload()).toThrow(/tied to lm_head/);
  });
});
