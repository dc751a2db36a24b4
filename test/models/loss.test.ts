/**
 * CausalLM.loss, the training loss without the (B, T, V) logits: the same loss and the same
 * gradients as the unfused causalLmLoss(model.forward(ids), labels) (a second code path), for
 * GPT-2 (tied head) and Llama (untied), under LoRA and in full fine-tuning (the tied head's
 * weight gradient reaches the embedding), with ignored labels and padding; an adapter on
 * lm_head takes the unfused path; and its refusals.
 */
import { Tensor, lora, models, nn, noGrad, tensor } from "../../lib";
import { randomizeFactors } from "../helpers/models";
import { countCalls } from "../helpers/native-calls";
import { expectClose } from "../helpers/stats";
import { PADDED_IDS, PADDED_LABELS, PADDED_MASK, TINY_GPT2, TINY_LLAMA } from "./support/tiny-checkpoints";

// No dropout: both paths must see the same network.
const GPT2 = { ...TINY_GPT2, resid_pdrop: 0, embd_pdrop: 0, attn_pdrop: 0 };
const LLAMA = TINY_LLAMA; // untied head, biases, grouped-query attention

const int64 = (rows: number[][]) => tensor(rows, { dtype: "int64" });
const IDS = [
  [5, 17, 3, 42, 8, 8, 29, 1],
  [40, 2, 11, 6, 33, 19, 4, 25],
];

/** Calls of the chunked loss's native entry point while `fn` runs. */
const fusedCalls = (fn: () => void): number => countCalls(["linearCrossEntropy"], fn).linearCrossEntropy;

/** The loss and every trainable parameter's gradient after `compute(model).backward()`. */
function lossAndGrads(module: nn.Module, compute: () => Tensor): { loss: number; grads: Map<string, number[]> } {
  for (const p of module.parameters()) p.grad = null;
  const loss = compute();
  loss.backward();
  const grads = new Map<string, number[]>();
  for (const [name, p] of module.namedParameters()) if (p.grad) grads.set(name, p.grad.reshape([-1]).toList() as number[]);
  return { loss: loss.item(), grads };
}

/** Both paths on one model: the fused loss must equal the unfused one, gradients included. */
function expectSameAsUnfused(module: nn.Module, model: models.CausalLM, ids: Tensor, options: { labels?: Tensor; attentionMask?: Tensor } = {}): void {
  const labels = options.labels ?? ids;
  let fused = { loss: 0, grads: new Map<string, number[]>() };
  expect(fusedCalls(() => (fused = lossAndGrads(module, () => model.loss(ids, options))))).toBe(1);
  const unfused = lossAndGrads(module, () => models.causalLmLoss(model.forward(ids, { attentionMask: options.attentionMask }), labels));
  expect(Math.abs(fused.loss - unfused.loss) / unfused.loss).toBeLessThan(1e-6);
  expect([...fused.grads.keys()].sort()).toEqual([...unfused.grads.keys()].sort());
  expect(fused.grads.size).toBeGreaterThan(0);
  for (const [name, g] of unfused.grads) {
    const scale = Math.max(...g.map(Math.abs));
    expect(scale).toBeGreaterThan(0);
    expectClose(fused.grads.get(name)!, g, 1e-5 * scale);
  }
}

describe("CausalLM.loss", () => {
  it("GPT-2 under LoRA: the unfused loss and the factors' gradients, logits never built", () => {
    const base = new models.GPT2LMHeadModel(GPT2);
    const lm = lora.injectAdapter(base, { r: 4, loraAlpha: 8 });
    randomizeFactors(lm);
    expectSameAsUnfused(lm, lm.model, int64(IDS));
  });

  it("Llama under LoRA with ignored labels, left padding and its mask", () => {
    const base = new models.LlamaForCausalLM(LLAMA);
    const lm = lora.injectAdapter(base, { r: 4, loraAlpha: 8 });
    randomizeFactors(lm);
    expectSameAsUnfused(lm, lm.model, int64(PADDED_IDS), { labels: int64(PADDED_LABELS), attentionMask: int64(PADDED_MASK) });
  });

  it("full fine-tuning of GPT-2: the tied head's weight gradient reaches the embedding, as the unfused graph's does", () => {
    const model = new models.GPT2LMHeadModel(GPT2);
    expect(model.lm_head.weight).toBe(model.transformer.wte.weight);
    expectSameAsUnfused(model, model, int64(IDS));
  });

  it("an adapter on lm_head takes the unfused path, with the same result", () => {
    const lm = lora.injectAdapter(new models.LlamaForCausalLM(LLAMA), { r: 4, loraAlpha: 8, targetModules: ["lm_head", "q_proj"] });
    randomizeFactors(lm);
    const ids = int64(IDS);
    let fused = 0;
    expect(fusedCalls(() => (fused = lm.model.loss(ids).item()))).toBe(0);
    expect(fused).toBe(models.causalLmLoss(lm.forward(ids), ids).item());
  });

  it("under noGrad gives the same value and records nothing", () => {
    const model = new models.GPT2LMHeadModel(GPT2);
    const ids = int64(IDS);
    const recorded = model.loss(ids);
    const plain = noGrad(() => model.loss(ids));
    expect(plain.requiresGrad).toBe(false);
    expect(plain.item()).toBe(recorded.item());
  });

  it("in bfloat16, the unfused loss within bf16 tolerance", () => {
    const model = new models.LlamaForCausalLM(LLAMA, { dtype: "bfloat16" });
    const ids = int64(IDS);
    const fused = noGrad(() => model.loss(ids)).item();
    const unfused = noGrad(() => models.causalLmLoss(model.forward(ids), ids)).item();
    expect(Math.abs(fused - unfused) / unfused).toBeLessThan(1e-2);
  });

  it.each<[string, (m: models.CausalLM) => unknown, RegExp]>([
    ["ids that are not int64", (m) => m.loss(tensor([[1, 2]])), /GPT2LMHeadModel\.loss: ids: expected an int64 Tensor \(B, T\)/],
    [
      "labels of another shape",
      (m) => m.loss(int64(IDS), { labels: int64([[1, 2]]) }),
      /GPT2LMHeadModel\.loss: labels: expected an int64 Tensor of the ids' shape \[2, 8\]/,
    ],
    ["float labels", (m) => m.loss(int64(IDS), { labels: tensor(IDS) }), /labels: expected an int64 Tensor of the ids' shape/],
    [
      "a label past the vocabulary",
      (m) => m.loss(int64(IDS), { labels: int64([IDS[0], [...IDS[1].slice(0, 7), 61]]) }),
      /target: class 61 is out of range \[0, 61\)/,
    ],
    ["an unknown option shape", (m) => m.loss(int64(IDS), 3 as never), /GPT2LMHeadModel\.loss: options/],
  ])("refuses %s", (_name, call, message) => {
    const model = new models.GPT2LMHeadModel(GPT2);
    expect(() => call(model)).toThrow(message);
  });
});
