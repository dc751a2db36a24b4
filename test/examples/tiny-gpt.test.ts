import { spawnSync } from "child_process";
import * as path from "path";
import { Tensor, crossEntropy, lora, manualSeed, memoryStats, noGrad, randn, tensor, tidy } from "../../lib";
import { Block, CONFIG, TinyGPT, evaluate, finetune, pretrain, sample, windows } from "../../examples/tiny-gpt";
import { ALPHABET, encode } from "../../demo/data";
import { collectLeftovers } from "../helpers/memory";

const ROOT = path.resolve(__dirname, "../..");

/** LayerNorm over the last dim from plain ops: (x - mean) / sqrt(var + eps) · w + b. */
function layerNormByHand(x: Tensor, w: Tensor, b: Tensor, eps = 1e-5): Tensor {
  const mean = x.mean(-1, true);
  const centred = x.sub(mean);
  const variance = centred.mul(centred).mean(-1, true);
  return centred.div(variance.add(eps).sqrt()).mul(w).add(b);
}

/** x · Wᵀ + b. */
function linearByHand(x: Tensor, layer: { weight: Tensor; bias: Tensor | null }): Tensor {
  const y = x.matmul(layer.weight.t());
  return layer.bias ? y.add(layer.bias) : y;
}

/** One block computed from matmul, softmax and an explicit causal mask (no fused op, no module forward). */
function blockByHand(block: Block, x: Tensor, causal = true): Tensor {
  const [b, t, c] = x.shape;
  const h = block.attn.heads;
  const d = c / h;
  const split = (y: Tensor) => y.reshape([b, t, h, d]).permute(0, 2, 1, 3); // (B, H, T, d)
  const a = layerNormByHand(x, block.ln1.weight!, block.ln1.bias!);
  const q = split(linearByHand(a, block.attn.q_proj));
  const k = split(linearByHand(a, block.attn.k_proj));
  const v = split(linearByHand(a, block.attn.v_proj));
  // Key j is hidden from query i when j > i: the strict upper triangle, filled with -inf.
  const future = tensor(
    Array.from({ length: t * t }, (_, i) => Math.floor(i / t) < i % t),
    { dtype: "bool", shape: [t, t] },
  );
  const raw = q.matmul(k.transpose(-2, -1)).div(Math.sqrt(d));
  const scores = causal ? raw.maskedFill(future, -Infinity) : raw;
  const attended = scores.softmax(-1).matmul(v).permute(0, 2, 1, 3).reshape([b, t, c]);
  const x1 = x.add(linearByHand(attended, block.attn.out_proj));
  const m = layerNormByHand(x1, block.ln2.weight!, block.ln2.bias!);
  const fc = linearByHand(m, block.mlp.fc);
  // gelu is the one op shared with the model (nn.GELU): it is checked against PyTorch on its own.
  return x1.add(linearByHand(fc.gelu(), block.mlp.proj));
}

describe("examples/tiny-gpt.ts", () => {
  test("a block's forward equals the same block computed from matmul, softmax and an explicit causal mask", () => {
    manualSeed(3);
    const block = new Block(32, 4);
    const x = randn([2, 7, 32]);
    noGrad(() =>
      tidy(() => {
        const fused = block.forward(x);
        const reference = blockByHand(block, x);
        expect(fused.shape).toEqual([2, 7, 32]);
        expect(fused.allclose(reference, { rtol: 1e-5, atol: 1e-5 })).toBe(true);
        // The mask matters: without it the reference differs, so the comparison above can fail.
        expect(fused.allclose(blockByHand(block, x, false), { rtol: 1e-3, atol: 1e-3 })).toBe(false);
      }),
    );
  });

  test("the model's logits are causal and its head is the token embedding's tensor", () => {
    manualSeed(4);
    const model = new TinyGPT({ ...CONFIG, context: 16 });
    expect(model.head.weight).toBe(model.tok.weight);
    expect(model.parameters().filter((p) => p === model.tok.weight)).toHaveLength(1);
    expect(model.parameters()).not.toContain(model.positions);
    const ids = tensor([[1, 2, 3, 4, 5, 6]], { dtype: "int64" });
    const other = tensor([[1, 2, 3, 9, 9, 9]], { dtype: "int64" });
    noGrad(() => {
      const a = model.forward(ids);
      const b = model.forward(other);
      expect(a.narrow(1, 0, 3).allclose(b.narrow(1, 0, 3), { rtol: 0, atol: 1e-6 })).toBe(true);
      expect(a.narrow(1, 3, 1).allclose(b.narrow(1, 3, 1), { rtol: 0, atol: 1e-3 })).toBe(false);
    });
  });

  test("sampling with top-k 1 is greedy decoding, computed here by argmax; a seed repeats a sample", async () => {
    manualSeed(5);
    const model = new TinyGPT({ ...CONFIG, context: 8 });
    // At init the tied head scores each input character against itself (|e|² ≈ dim), so an
    // untrained model repeats its last character; small embeddings give varied predictions.
    noGrad(() => model.tok.weight.mul_(0.05));
    const ids = encode("the ");
    noGrad(() => {
      for (let i = 0; i < 12; i++) {
        const window = ids.slice(-8);
        const logits = model.forward(tensor(window, { dtype: "int64", shape: [1, window.length] }));
        ids.push(
          Number(
            logits
              .narrow(1, window.length - 1, 1)
              .reshape([-1])
              .argmax(0)
              .item(),
          ),
        );
      }
    });
    const greedy = ids.map((id) => ALPHABET[id]).join("");
    expect(new Set(greedy.slice(4)).size).toBeGreaterThan(2); // not one character repeated
    expect(sample(model, "the ", 12, { temperature: 0.7, topK: 1, seed: 1, context: 8 })).toBe(greedy);
    // tidy frees every step's tensors: sampling leaves no live tensor behind.
    await collectLeftovers();
    const live = memoryStats().liveTensors;
    const drawn = sample(model, "the ", 30, { temperature: 1.5, topK: 5, seed: 9, context: 8 });
    expect(memoryStats().liveTensors).toBe(live);
    expect(sample(model, "the ", 30, { temperature: 1.5, topK: 5, seed: 9, context: 8 })).toBe(drawn);
    expect(drawn).not.toBe(sample(model, "the ", 30, { temperature: 1.5, topK: 5, seed: 10, context: 8 }));
  });

  test("LoRA fine-tuning lowers the task-B loss, recomputed here from the logits", () => {
    const evalB = windows("B", 40, 11); // text the example never evaluates on
    const lossOf = (model: { forward(ids: Tensor): Tensor }) =>
      noGrad(() =>
        tidy(() => {
          const t = evalB.inputs.shape[1] - 1;
          const logits = model.forward(evalB.inputs.narrow(1, 0, t));
          return crossEntropy(logits.reshape([-1, CONFIG.vocab]), evalB.inputs.narrow(1, 1, t).reshape([-1])).item();
        }),
      );
    const model = pretrain(true);
    const before = lossOf(model);
    expect(evaluate(model, evalB)).toBeCloseTo(before, 5);
    const base = model.blocks.at(0).attn.k_proj.weight.clone();
    const lm = finetune(model, true);
    const after = lossOf(lm);
    expect(after).toBeLessThan(before - 0.2);
    // Only the adapter trained: a projection LoRA does not target is bit for bit the same.
    expect(model.blocks.at(0).attn.k_proj.weight.equal(base)).toBe(true);
    // The adapters are where the config says: q, v of each block and the token embedding.
    const adapted = lm
      .namedModules()
      .filter(([, m]) => m instanceof lora.LoraLayer)
      .map(([p]) => p);
    expect(adapted.map((p) => p.replace(/^model\./, "")).sort()).toEqual(
      ["blocks.0.attn.q_proj", "blocks.0.attn.v_proj", "blocks.1.attn.q_proj", "blocks.1.attn.v_proj", "tok"].sort(),
    );
  }, 120_000);

  test("node dist/examples/tiny-gpt.js --quick runs to the end and prints falling losses and two samples", () => {
    const r = spawnSync(process.execPath, [path.join(ROOT, "dist/examples/tiny-gpt.js"), "--quick"], { encoding: "utf8", timeout: 120000 });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    const before = Number(/task B loss before LoRA: ([\d.]+)/.exec(r.stdout)?.[1]);
    const after = Number(/task B loss after LoRA: ([\d.]+)/.exec(r.stdout)?.[1]);
    expect(after).toBeLessThan(before);
    const samples = [...r.stdout.matchAll(/sample (?:before|after): "(.*)"/g)].map((m) => m[1]);
    expect(samples).toHaveLength(2);
    for (const s of samples) expect(s).toMatch(/^the [a-z .]{40}$/);
  }, 120_000);
});
