/**
 * GPT-2 and Llama-family checkpoints in Hugging Face layout, written by an independent Python
 * reference (plain PyTorch following transformers' modeling code), loaded here with
 * fromPretrained: logits, loss, LoRA factor gradients and greedy generations must agree.
 */
import * as fs from "fs";
import * as path from "path";
import { Tensor, lora, models, noGrad, randn, tensor } from "../../lib";
import { itTorch } from "../helpers/python";
import { makeTempDir } from "../helpers/temp";
import { atRealTokens, reference, relativeError } from "./support/reference";
import { PADDED_IDS, PADDED_LABELS, PADDED_MASK, TINY_GPT2, TINY_LLAMA, TINY_QWEN2, paddedIds, paddedMask } from "./support/tiny-checkpoints";

const GPT2 = TINY_GPT2;
const LLAMA = TINY_LLAMA;
const QWEN2 = TINY_QWEN2;
const [IDS, MASK, LABELS] = [PADDED_IDS, PADDED_MASK, PADDED_LABELS];

let root: string;
beforeAll(() => {
  root = makeTempDir("tl-models-");
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

function checkpoint(name: string, config: Record<string, unknown>, extra: Record<string, unknown> = {}): string {
  const dir = path.join(root, name);
  if (!fs.existsSync(dir)) reference({ op: "make", dir, config, seed: 7, ...extra });
  return dir;
}

const [ids, mask] = [paddedIds, paddedMask];

describe.each([
  ["gpt2 (published key layout: no transformer. prefix, attn.bias buffers)", "gpt2", GPT2, {}],
  ["gpt2 (transformer. prefix)", "gpt2-prefixed", GPT2, { prefix: true }],
  ["llama (GQA, head_dim, biases, rope_theta)", "llama", LLAMA, {}],
  ["qwen2 (tied, one kv head, sharded)", "qwen2", QWEN2, { shards: 3 }],
])("%s", (_title, name, config, extra) => {
  itTorch("fromPretrained builds the class of model_type, and the logits of a left-padded batch match the reference (fp32, 1e-5)", async () => {
    const dir = checkpoint(name, config, extra);
    const model = await models.fromPretrained(dir);
    expect(model).toBeInstanceOf(config.model_type === "gpt2" ? models.GPT2LMHeadModel : models.LlamaForCausalLM);
    const logits = model.forward(ids(), { attentionMask: mask() });
    const ref = reference<{ logits: number[]; shape: number[] }>({ op: "forward", dir, ids: IDS, mask: MASK });
    expect(logits.shape).toEqual(ref.shape);
    const ours = atRealTokens(logits.toList() as number[], ref.shape, MASK);
    expect(relativeError(ours, atRealTokens(ref.logits, ref.shape, MASK))).toBeLessThan(1e-5);
  });

  itTorch("greedy generation with the KV cache equals the reference's argmax loop without a cache", async () => {
    const dir = checkpoint(name, config, extra);
    const model = await models.fromPretrained(dir);
    const out = model.generate(ids(), { maxNewTokens: 6, attentionMask: mask() });
    const ref = reference<{ ids: number[][] }>({ op: "greedy", dir, ids: IDS, mask: MASK, steps: 6 });
    expect(out.shape).toEqual([2, 13]);
    expect(out.toList()).toEqual(ref.ids.flat());
    const streamed: number[][] = [];
    for await (const step of model.stream(ids(), { maxNewTokens: 6, attentionMask: mask() })) streamed.push(step);
    expect(streamed).toEqual(
      ref.ids.map((row) => row.slice(7)).reduce((acc, row, b) => (row.forEach((t, i) => ((acc[i] ??= [])[b] = t)), acc), [] as number[][]),
    );
  });

  itTorch("bfloat16: the logits match the reference run in bfloat16 within bfloat16 tolerance", async () => {
    const dir = checkpoint(name, config, extra);
    const model = await models.fromPretrained(dir, { dtype: "bfloat16" });
    expect(model.parameters().every((p) => p.dtype === "bfloat16")).toBe(true);
    const logits = model.forward(ids(), { attentionMask: mask() });
    const ref = reference<{ logits: number[]; shape: number[] }>({ op: "forward", dir, ids: IDS, mask: MASK, dtype: "bfloat16" });
    expect(relativeError(atRealTokens(logits.to("float32").toList() as number[], ref.shape, MASK), atRealTokens(ref.logits, ref.shape, MASK))).toBeLessThan(
      3e-2,
    );
  });

  itTorch("LoRA with PEFT's default targets: loss and the gradients of every factor match the reference reading our saved adapter", async () => {
    const dir = checkpoint(name, config, extra);
    const model = await models.fromPretrained(dir);
    const peft = lora.injectAdapter(model, { r: 4, loraAlpha: 8 });
    const layers = peft.loraLayers();
    const expected = config.model_type === "gpt2" ? ["c_attn"] : ["q_proj", "v_proj"];
    expect(new Set(layers.map(([p]) => p.split(".").pop()))).toEqual(new Set(expected));
    expect(layers).toHaveLength(2 * expected.length);
    // B starts at zero (so would A's gradient): give it values.
    noGrad(() => layers.forEach(([, l]) => l.factors("default")[1].copy_(randn(l.factors("default")[1].shape).mul(0.3))));
    const logits = model.forward(ids(), { attentionMask: mask() });
    const loss = models.causalLmLoss(logits, tensor(LABELS, { dtype: "int64" }));
    loss.backward();
    const adapterDir = path.join(root, `${name}-adapter`);
    lora.saveAdapter(peft, adapterDir);
    const saved = JSON.parse(fs.readFileSync(path.join(adapterDir, "adapter_config.json"), "utf8"));
    expect(saved.task_type).toBe("CAUSAL_LM");
    expect(saved.base_model_name_or_path).toBe(dir);
    expect(saved.fan_in_fan_out).toBe(config.model_type === "gpt2");
    expect(saved.target_modules).toEqual(expected);
    const ref = reference<{ loss: number; gradA: Record<string, number[]>; gradB: Record<string, number[]> }>({
      op: "forward",
      dir,
      ids: IDS,
      mask: MASK,
      labels: LABELS,
      adapter: adapterDir,
    });
    expect(Math.abs(loss.item() - ref.loss) / Math.abs(ref.loss)).toBeLessThan(1e-5);
    for (const [p, layer] of layers) {
      const [A, B] = layer.factors("default");
      expect(relativeError(A.grad as Tensor, ref.gradA[p])).toBeLessThan(1e-5);
      expect(relativeError(B.grad as Tensor, ref.gradB[p])).toBeLessThan(1e-5);
    }
  });

  itTorch("an adapter written by the Python side in PEFT's layout loads here and gives the reference's logits", async () => {
    const dir = checkpoint(name, config, extra);
    const layers =
      config.model_type === "gpt2"
        ? [0, 1].map((i) => `transformer.h.${i}.attn.c_attn`)
        : [0, 1].flatMap((i) => ["q_proj", "v_proj"].map((m) => `model.layers.${i}.self_attn.${m}`));
    const adapterDir = path.join(root, `${name}-python-adapter`);
    reference({ op: "make_adapter", dir, out: adapterDir, targets: layers, r: 3, alpha: 5 });
    const model = await models.fromPretrained(dir);
    const peft = lora.loadAdapter(model, adapterDir);
    expect(
      peft
        .loraLayers()
        .map(([p]) => p)
        .sort(),
    ).toEqual([...layers].sort());
    const logits = model.forward(ids(), { attentionMask: mask() });
    const ref = reference<{ logits: number[]; shape: number[] }>({ op: "forward", dir, ids: IDS, mask: MASK, adapter: adapterDir });
    expect(relativeError(atRealTokens(logits.toList() as number[], ref.shape, MASK), atRealTokens(ref.logits, ref.shape, MASK))).toBeLessThan(1e-5);
  });
});
