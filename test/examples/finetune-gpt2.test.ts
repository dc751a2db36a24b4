import { spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { Tensor, crossEntropy, io, lora, manualSeed, models, noGrad, randn, tensor, tidy } from "../../lib";
import { generateText, makeExamples } from "../../demo/data";
import { makeTempDir } from "../helpers/temp";

const ROOT = path.resolve(__dirname, "../..");

/** Next-token cross-entropy from the logits, shifted here (not with models.causalLmLoss). */
function nextTokenLoss(model: { forward(ids: Tensor): Tensor }, windows: Tensor): number {
  return noGrad(() =>
    tidy(() => {
      const t = windows.shape[1] - 1;
      const logits = model.forward(windows.narrow(1, 0, t));
      return crossEntropy(logits.reshape([-1, logits.shape[2]]), windows.narrow(1, 1, t).reshape([-1])).item();
    }),
  );
}

/** The rows of a (B, T) tensor as arrays of numbers. */
function rowsOf(t: Tensor): number[][] {
  const flat = t.toList();
  return Array.from({ length: t.shape[0] }, (_, i) => flat.slice(i * t.shape[1], (i + 1) * t.shape[1]));
}

describe("examples/finetune-gpt2.ts", () => {
  let out: string;
  beforeAll(() => {
    out = makeTempDir("tl-finetune-gpt2-");
  });
  afterAll(() => fs.rmSync(out, { recursive: true, force: true }));

  test("--quick writes a checkpoint, a PEFT adapter that lowers the task-B loss, and a CLI-merged checkpoint equal to the adapted model", async () => {
    const r = spawnSync(process.execPath, [path.join(ROOT, "dist/examples/finetune-gpt2.js"), "--quick", "--out", out], { encoding: "utf8", timeout: 180_000 });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);

    // Everything below is read back from the files, independently of what the example printed.
    const baseDir = path.join(out, "base");
    expect(fs.readdirSync(baseDir).sort()).toEqual(["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]);
    const tokenizer = models.loadTokenizer(baseDir);
    const text = generateText("B", 40, 11); // text the example never saw
    const ids = tokenizer.encode(text);
    expect(ids).toHaveLength(text.length); // one token per character
    expect(tokenizer.decode(ids)).toBe(text);
    const evalB = makeExamples(ids, 33).inputs.slice(0, 0, null, 7); // every 7th window of 33 tokens

    const model = await models.fromPretrained(baseDir);
    expect(model).toBeInstanceOf(models.GPT2LMHeadModel);
    const baseLogits = noGrad(() => model.forward(evalB));
    const before = nextTokenLoss(model, evalB);

    const lm = lora.loadAdapter(model, path.join(out, "adapter"));
    const adapted = lm.loraLayers().map(([p]) => p.replace(/^model\./, ""));
    expect(adapted.sort()).toEqual(["transformer.h.0.attn.c_attn", "transformer.h.1.attn.c_attn"]);
    const after = nextTokenLoss(lm, evalB);
    expect(after).toBeLessThan(before - 0.1);

    const merged = await models.fromPretrained(path.join(out, "merged"));
    noGrad(() =>
      tidy(() => {
        const adaptedLogits = lm.forward(evalB);
        const mergedLogits = merged.forward(evalB);
        expect(mergedLogits.sub(adaptedLogits).abs().max().item()).toBeLessThan(1e-5);
        // The adapter changes the logits, so the comparison above can fail.
        expect(baseLogits.sub(adaptedLogits).abs().max().item()).toBeGreaterThan(1e-2);
      }),
    );

    // One merged weight by hand: GPT-2's Conv1D stores W as (in, out), so W' = W + (α/r)·(B·A)ᵀ.
    const factors = io.loadSafetensorsSync(path.join(out, "adapter", "adapter_model.safetensors"));
    const config = JSON.parse(fs.readFileSync(path.join(out, "adapter", "adapter_config.json"), "utf8"));
    const key = "base_model.model.transformer.h.1.attn.c_attn";
    const base = (await io.loadSafetensors(path.join(baseDir, "model.safetensors")))["transformer.h.1.attn.c_attn.weight"];
    const expected = base.add(
      factors[`${key}.lora_B.weight`]
        .matmul(factors[`${key}.lora_A.weight`])
        .t()
        .mul(config.lora_alpha / config.r),
    );
    const written = (await io.loadSafetensors(path.join(out, "merged", "model.safetensors")))["transformer.h.1.attn.c_attn.weight"];
    expect(written.allclose(expected, { rtol: 1e-5, atol: 1e-6 })).toBe(true);
    expect(written.allclose(base, { rtol: 1e-5, atol: 1e-6 })).toBe(false);
  }, 180_000);

  test("per-row adapter names in generate: each row equals its own adapter (or the base) run alone", () => {
    manualSeed(21);
    const model = new models.GPT2LMHeadModel({
      model_type: "gpt2",
      vocab_size: 29,
      n_positions: 32,
      n_embd: 32,
      n_layer: 2,
      n_head: 4,
      resid_pdrop: 0,
      embd_pdrop: 0,
      attn_pdrop: 0,
    }).eval();
    // PEFT's init_lora_weights=false: B starts random too, so each adapter changes the output.
    const lm = lora.injectAdapter(model, { r: 4, loraAlpha: 8, initLoraWeights: false }, "a");
    lm.addAdapter("b", { r: 2, loraAlpha: 8, initLoraWeights: false });
    // Larger factors than the init's, so the adapters change which token is the argmax; and small
    // embeddings (GPT-2's scale), else the tied head makes an untrained model repeat its last token.
    noGrad(() => {
      model.transformer.wte.weight.mul_(0.05);
      for (const [, layer] of lm.loraLayers()) for (const name of ["a", "b"]) for (const f of layer.factors(name)) f.copy_(randn(f.shape).mul(0.5));
    });
    const rows = tensor(
      [
        [3, 7, 1, 20, 4],
        [9, 2, 14, 5, 11],
      ],
      { dtype: "int64" },
    );
    const options = { maxNewTokens: 4, doSample: false };
    const alone = (row: number, name: string | null): number[][] => {
      if (name === null) lm.disableAdapters();
      else lm.setAdapter(name);
      try {
        return rowsOf(model.generate(rows.narrow(0, row, 1), options));
      } finally {
        lm.enableAdapters();
      }
    };

    const mixed = rowsOf(lm.withAdapterNames(["a", "__base__"], () => model.generate(rows, options)));
    expect(mixed).toEqual([...alone(0, "a"), ...alone(1, null)]);
    const swapped = rowsOf(lm.withAdapterNames(["__base__", "b"], () => model.generate(rows, options)));
    expect(swapped).toEqual([...alone(0, null), ...alone(1, "b")]);
    // The adapters change the generations, so the comparisons above can fail.
    expect(alone(0, "a")).not.toEqual(alone(0, null));
    expect(alone(1, "b")).not.toEqual(alone(1, null));
  });
});
