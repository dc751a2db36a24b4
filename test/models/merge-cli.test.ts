/**
 * `torch-lora merge` on transformers checkpoint folders, single-file and sharded: the merged
 * folder, loaded with fromPretrained, gives the outputs of the base with the adapter applied.
 */
import * as fs from "fs";
import * as path from "path";
import { lora, models, noGrad, randn, tensor } from "../../lib";
import { ensureBuilt, runCli } from "../cli/run-cli";
import { itTorch } from "../helpers/python";
import { reference, relativeError } from "./support/reference";
import { makeTempDir } from "../helpers/temp";

const GPT2 = { model_type: "gpt2", vocab_size: 41, n_positions: 16, n_embd: 16, n_layer: 2, n_head: 2 };
const LLAMA = {
  model_type: "llama",
  vocab_size: 29,
  hidden_size: 16,
  intermediate_size: 24,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
};

let root: string;
beforeAll(() => {
  ensureBuilt();
  root = makeTempDir("tl-models-merge-");
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

describe.each([
  ["gpt2, published key layout, 2 shards", "gpt2", GPT2, 2],
  ["llama (square q/v: the layout comes from model_type), one file", "llama", LLAMA, 1],
])("%s", (_t, name, config, shards) => {
  itTorch("the merged folder keeps the layout and gives the adapted model's logits", async () => {
    const base = path.join(root, name);
    reference({ op: "make", dir: base, config, seed: 3, shards });
    fs.writeFileSync(path.join(base, "tokenizer.json"), "{}");
    const model = await models.fromPretrained(base);
    const peft = lora.injectAdapter(model, { r: 2, loraAlpha: 4 });
    noGrad(() => peft.loraLayers().forEach(([, l]) => l.factors("default")[1].copy_(randn(l.factors("default")[1].shape).mul(0.5))));
    const ids = tensor([[1, 5, 9, 2, 7]], { dtype: "int64" });
    const adapted = model.forward(ids);
    const adapterDir = path.join(root, `${name}-adapter`);
    lora.saveAdapter(peft, adapterDir);
    const out = path.join(root, `${name}-merged`);
    const r = runCli(["merge", "--base", base, "--adapter", adapterDir, "--out", out]);
    expect(r.stderr).not.toMatch(/Error/);
    expect(r.code).toBe(0);
    expect(fs.readdirSync(out).sort()).toEqual(fs.readdirSync(base).sort());
    const merged = await models.fromPretrained(out);
    expect(relativeError(merged.forward(ids), adapted.toList() as number[])).toBeLessThan(1e-5);
    expect(relativeError(merged.forward(ids), (await models.fromPretrained(base)).forward(ids).toList() as number[])).toBeGreaterThan(1e-3);
  });
});

itTorch("a folder --base with a file --out, or --out the base folder itself, is refused before anything is written", () => {
  const base = path.join(root, "gpt2");
  const adapterDir = path.join(root, "gpt2-adapter");
  const file = path.join(root, "file.safetensors");
  fs.writeFileSync(file, "x");
  expect(runCli(["merge", "--base", base, "--adapter", adapterDir, "--out", file]).stderr).toMatch(/--out .*is a file/);
  expect(runCli(["merge", "--base", base, "--adapter", adapterDir, "--out", base]).stderr).toMatch(/is the base folder/);
});
