/**
 * Checkpoints cross between torch-lora and transformers itself, both ways: a model that
 * transformers wrote with `save_pretrained` loads here with `fromPretrained`, one that
 * torch-lora wrote with `savePretrained` loads there with no missing or unexpected key, and
 * both sides give the same logits (fp32, 1e-5 relative) and the same greedy generations.
 */
import * as fs from "fs";
import * as path from "path";
import { manualSeed, models } from "../../lib";
import { makeTempDir } from "../helpers/temp";
import { atRealTokens, relativeError } from "../models/support/reference";
import { PADDED_IDS, PADDED_MASK, TINY_GPT2, TINY_LLAMA, TINY_QWEN2, paddedIds, paddedMask } from "../models/support/tiny-checkpoints";
import { describeHf, hf, hfOne } from "./support/hf";

// No eos token: generation then runs every step on both sides. A position limit transformers'
// generate needs to know.
const FOR_GENERATION = { bos_token_id: null, eos_token_id: null, max_position_embeddings: 64 };
const CONFIGS: [string, Record<string, unknown>][] = [
  ["gpt2", { ...TINY_GPT2, bos_token_id: null, eos_token_id: null }],
  ["llama (GQA, head_dim, biases, rope_theta, untied)", { ...TINY_LLAMA, ...FOR_GENERATION }],
  ["mistral (GQA)", { ...TINY_LLAMA, model_type: "mistral", head_dim: 8, attention_bias: false, mlp_bias: false, sliding_window: null, ...FOR_GENERATION }],
  ["qwen2 (tied, one kv head, q/k/v biases)", { ...TINY_QWEN2, ...FOR_GENERATION }],
  // Llama 3.1's scaling, with a window that puts the 6 frequencies of head_dim 12 in all three of
  // its bands (wavelengths 6.3 < 200/4, 56 between, 499 and up > 200).
  [
    "llama3 (Llama 3.1's RoPE scaling, rope_parameters)",
    {
      ...TINY_LLAMA,
      ...FOR_GENERATION,
      rope_parameters: { rope_type: "llama3", rope_theta: 500000, factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 200 },
    },
  ],
  ["qwen2-linear (linear RoPE scaling)", { ...TINY_QWEN2, ...FOR_GENERATION, rope_parameters: { rope_type: "linear", rope_theta: 1e6, factor: 4 } }],
];
const [IDS, MASK] = [PADDED_IDS, PADDED_MASK];
const [ids, mask] = [paddedIds, paddedMask];

interface Logits {
  logits: number[];
  shape: number[];
  loading: { missing: string[]; unexpected: string[] };
}

let root: string;
beforeAll(() => {
  root = makeTempDir("tl-interop-models-");
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

/** Our logits at the real tokens against transformers', relative to their largest magnitude. */
function logitsError(ours: number[], theirs: Logits): number {
  return relativeError(atRealTokens(ours, theirs.shape, MASK), atRealTokens(theirs.logits, theirs.shape, MASK));
}

describeHf("checkpoints between torch-lora and transformers", () => {
  test.each(CONFIGS)("%s: transformers writes (sharded), torch-lora reads: same logits, same greedy generation", async (name, config) => {
    const dir = path.join(root, `theirs-${name.split(" ")[0]}`);
    const [, forward, generated] = hf<Logits & { ids: number[][] }>([
      { op: "make", dir, config, seed: 3, max_shard_size: "8KB" },
      { op: "forward", dir, ids: IDS, mask: MASK },
      { op: "generate", dir, ids: IDS, mask: MASK, steps: 6 },
    ]);
    expect(fs.existsSync(path.join(dir, "model.safetensors.index.json"))).toBe(true);
    const model = await models.fromPretrained(dir);
    expect(model).toBeInstanceOf(config.model_type === "gpt2" ? models.GPT2LMHeadModel : models.LlamaForCausalLM);
    const logits = model.forward(ids(), { attentionMask: mask() });
    expect(logits.shape).toEqual(forward.shape);
    expect(logitsError(logits.toList() as number[], forward)).toBeLessThan(1e-5);
    expect(model.generate(ids(), { maxNewTokens: 6, attentionMask: mask() }).toList()).toEqual(generated.ids.flat());
  });

  test.each(CONFIGS)("%s: torch-lora writes, transformers reads every key: same logits", async (name, config) => {
    manualSeed(11);
    const model = models.modelFromConfig(config);
    const dir = path.join(root, `ours-${name.split(" ")[0]}`);
    await model.savePretrained(dir);
    const theirs = hfOne<Logits>({ op: "forward", dir, ids: IDS, mask: MASK });
    expect(theirs.loading).toEqual({ missing: [], unexpected: [] });
    model.eval();
    expect(logitsError(model.forward(ids(), { attentionMask: mask() }).toList() as number[], theirs)).toBeLessThan(1e-5);
  });

  test("llama: transformers writes bfloat16, torch-lora reads it as bfloat16: logits within bfloat16 tolerance of transformers' own bfloat16 run", async () => {
    const dir = path.join(root, "theirs-bf16");
    const config = CONFIGS[1][1];
    const [, theirs] = hf<Logits>([
      { op: "make", dir, config, seed: 8, dtype: "bfloat16" },
      { op: "forward", dir, ids: IDS, mask: MASK, dtype: "bfloat16" },
    ]);
    const model = await models.fromPretrained(dir, { dtype: "bfloat16" });
    expect(model.parameters().every((p) => p.dtype === "bfloat16")).toBe(true);
    const logits = model.forward(ids(), { attentionMask: mask() }).to("float32");
    expect(logitsError(logits.toList() as number[], theirs)).toBeLessThan(3e-2);
  });
});
