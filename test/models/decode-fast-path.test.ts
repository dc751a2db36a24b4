/**
 * The inference fast path of decoding: keys and values written in place into preallocated cache
 * buffers and attended in one native call (attentionWithCache), GPT-2's Conv1D as one addmm or
 * gemv, gelu_new as one fused op. Each decoding step's logits must equal those of a forward over
 * the whole sequence so far (a second code path: no cache, causal attention over everything),
 * for plain models and with unmerged LoRA adapters, with left padding, and across buffer growth.
 */
import { Tensor, cat, lora, manualSeed, models, nn, noGrad, tensor } from "../../lib";
import { native } from "../../lib/binding";
import { handleOf } from "../../lib/tensor";
import { randomizeFactors } from "../helpers/models";
import { countCalls } from "../helpers/native-calls";
import { expectGradientMatchesFiniteDifferences, pseudoRandom } from "../helpers/gradcheck";

const GPT2 = { model_type: "gpt2", vocab_size: 50, n_positions: 40, n_embd: 32, n_layer: 2, n_head: 4 };
const LLAMA = {
  model_type: "llama",
  vocab_size: 45,
  hidden_size: 32,
  intermediate_size: 48,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
};

const int64 = (rows: number[][]) => tensor(rows, { dtype: "int64" });

/**
 * Prefills `ids (B, T0)` through a cache of `capacity` tokens, then feeds `steps` tokens one at a
 * time; compares every step's last logits with the forward over the whole sequence so far.
 */
function expectStepsMatchFullForward(m: models.CausalLM, ids: Tensor, steps: number[][], capacity: number, mask: Tensor | null = null): void {
  noGrad(() => {
    const cache = new models.KVCache(m.numLayers, { capacity });
    let seq = ids;
    let fullMask = mask;
    const attended = countCalls(["attentionWithCache"], () => {
      let logits = m.forward(ids, { cache, attentionMask: mask });
      expect(logits.allclose(m.forward(ids, { attentionMask: mask }), { rtol: 1e-5, atol: 1e-5 })).toBe(true);
      for (const step of steps) {
        const next = int64(step.map((t) => [t]));
        seq = cat([seq, next], 1);
        if (fullMask) fullMask = cat([fullMask, int64(step.map(() => [1]))], 1);
        logits = m.forward(next, { cache, attentionMask: fullMask });
        const full = m.forward(seq, { attentionMask: fullMask });
        const last = full.narrow(1, seq.shape[1] - 1, 1);
        expect(logits.shape).toEqual(last.shape);
        expect(logits.allclose(last, { rtol: 1e-5, atol: 1e-5 })).toBe(true);
      }
    }).attentionWithCache;
    // Every layer of every forward took the in-place path.
    expect(attended).toBe(m.numLayers * (steps.length + 1));
    expect(cache.length).toBe(seq.shape[1]);
    cache.dispose();
  });
}

describe.each([
  ["gpt2", GPT2],
  ["llama", LLAMA],
])("%s: decoding steps through the in-place cache", (_name, config) => {
  const build = () => {
    manualSeed(3);
    return models.modelFromConfig(config).eval();
  };
  const steps = [[7], [1], [30], [2], [11], [5]];

  it("each step's logits equal the full-sequence forward's", () => {
    expectStepsMatchFullForward(build(), int64([[4, 9, 2]]), steps, 16);
  });

  it("the buffers grow past their capacity, keeping what they hold", () => {
    expectStepsMatchFullForward(build(), int64([[4, 9, 2]]), steps, 1);
  });

  it("unmerged LoRA adapters apply at every step", () => {
    const m = build();
    const base = noGrad(() => m.forward(int64([[4, 9, 2, 7]])));
    const lm = lora.injectAdapter(m, { r: 4, loraAlpha: 8 });
    randomizeFactors(lm);
    const adapted = noGrad(() => m.forward(int64([[4, 9, 2, 7]])));
    expect(adapted.allclose(base, { rtol: 1e-3, atol: 1e-3 })).toBe(false);
    expectStepsMatchFullForward(m, int64([[4, 9, 2]]), steps, 8);
  });

  it("left-padded rows, with the attention mask growing each step", () => {
    const ids = int64([
      [0, 0, 4, 9],
      [3, 8, 4, 9],
    ]);
    const mask = int64([
      [0, 0, 1, 1],
      [1, 1, 1, 1],
    ]);
    expectStepsMatchFullForward(
      build(),
      ids,
      steps.map(([t]) => [t, (t * 7) % 40]),
      8,
      mask,
    );
  });

  it("greedy generate equals the argmax loop without a cache", () => {
    const m = build();
    const prompt = int64([[4, 9, 2]]);
    const out = m.generate(prompt, { maxNewTokens: 8 });
    let cur = prompt;
    noGrad(() => {
      for (let i = 0; i < 8; i++) {
        const logits = m.forward(cur);
        cur = cat([cur, logits.narrow(1, cur.shape[1] - 1, 1).argmax(-1)], 1);
      }
    });
    expect(out.toList()).toEqual(cur.toList());
  });
});

describe("a cache used with gradients", () => {
  it("concatenates instead of writing in place, and backward through two steps works", () => {
    manualSeed(3);
    const m = new models.GPT2LMHeadModel(GPT2).eval(); // no dropout; gradients are still recorded
    const ids = int64([[4, 9, 2, 7, 1]]);
    const cache = new models.KVCache(2);
    const calls = countCalls(["attentionWithCache"], () => {
      const first = m.forward(ids.narrow(1, 0, 3), { cache });
      const second = m.forward(ids.narrow(1, 3, 2), { cache });
      cat([first, second], 1).sum().backward();
    }).attentionWithCache;
    expect(calls).toBe(0);
    const viaCache = m.transformer.wte.weight.grad!.clone();
    for (const p of m.parameters()) p.grad = null;
    m.forward(ids).sum().backward();
    expect(viaCache.allclose(m.transformer.wte.weight.grad!, { rtol: 1e-4, atol: 1e-5 })).toBe(true);
    cache.dispose();
  });

  it("refuses keys of another shape by name, and a bad capacity", () => {
    const m = models.modelFromConfig(GPT2).eval();
    const cache = new models.KVCache(2);
    noGrad(() => m.forward(int64([[1, 2]]), { cache }));
    expect(() => noGrad(() => m.forward(int64([[1], [2]]), { cache }))).toThrow(/KVCache: layer 0 holds keys of shape \[1, 4, 64, 8\]/);
    expect(() => new models.KVCache(2, { capacity: 0 })).toThrow(/capacity: expected a positive integer, got 0/);
    expect(() => new models.KVCache(0)).toThrow(/numLayers: expected a positive integer/);
  });
});

describe("the fused ops of the fast path", () => {
  const x = tensor(pseudoRandom(2 * 3 * 8, 1), { shape: [2, 3, 8] });

  it("gelu tanh equals transformers' gelu_new formula; its gradient matches finite differences", () => {
    const formula = x
      .pow(3)
      .mul(0.044715)
      .add(x)
      .mul(Math.sqrt(2 / Math.PI))
      .tanh()
      .add(1)
      .mul(x)
      .mul(0.5);
    expect(nn.gelu(x, "tanh").allclose(formula, { rtol: 1e-6, atol: 1e-6 })).toBe(true);
    expect(new nn.GELU({ approximate: "tanh" }).forward(x).allclose(formula, { rtol: 1e-6, atol: 1e-6 })).toBe(true);
    expect(nn.gelu(x).allclose(x.gelu())).toBe(true);
    expectGradientMatchesFiniteDifferences((t) => nn.gelu(t, "tanh"), pseudoRandom(12, 4), [3, 4]);
    expect(() => nn.gelu(x, "exact" as never)).toThrow(/approximate: expected "none" or "tanh", got the string "exact"/);
  });

  it("Conv1D is x·W + b for one row and for many; its gradients match finite differences", () => {
    const conv = new nn.Conv1D(5, 8);
    noGrad(() => conv.bias.copy_(tensor(pseudoRandom(5, 2))));
    const expected = x.matmul(conv.weight).add(conv.bias);
    expect(conv.forward(x).allclose(expected, { rtol: 1e-5, atol: 1e-6 })).toBe(true);
    const row = x.narrow(0, 0, 1).narrow(1, 0, 1);
    expect(conv.forward(row).shape).toEqual([1, 1, 5]);
    expect(conv.forward(row).allclose(expected.narrow(0, 0, 1).narrow(1, 0, 1), { rtol: 1e-5, atol: 1e-6 })).toBe(true);
    const w = tensor(pseudoRandom(8 * 5, 3), { shape: [8, 5], dtype: "float64" });
    const b = tensor(pseudoRandom(5, 5), { dtype: "float64" });
    const viaConv = (t: Tensor) => new Tensor(native.linearInOut(handleOf(t), handleOf(w), handleOf(b)));
    expectGradientMatchesFiniteDifferences(viaConv, pseudoRandom(8, 6), [1, 8]);
    expectGradientMatchesFiniteDifferences(viaConv, pseudoRandom(24, 7), [3, 8]);
    const one = tensor(pseudoRandom(8, 8), { shape: [1, 8], dtype: "float64" });
    const ofWeight = (t: Tensor) => new Tensor(native.linearInOut(handleOf(one), handleOf(t), handleOf(b)));
    expectGradientMatchesFiniteDifferences(ofWeight, pseudoRandom(40, 9), [8, 5]);
    expect(() => conv.forward(tensor([[1, 2, 3]]))).toThrow(/input: expected last dimension 8 \(in_features\), got shape \[1, 3\]/);
  });

  it("Linear on one row (gemv) equals the same row inside a batch (GEMM)", () => {
    const lin = new nn.Linear(8, 6);
    const all = lin.forward(x);
    expect(lin.forward(x.narrow(0, 1, 1).narrow(1, 2, 1)).allclose(all.narrow(0, 1, 1).narrow(1, 2, 1), { rtol: 1e-5, atol: 1e-6 })).toBe(true);
    expect(lin.forward(x.narrow(0, 1, 1).narrow(1, 2, 1).reshape([8])).shape).toEqual([6]);
  });
});
