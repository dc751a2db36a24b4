/**
 * Adapters cross between torch-lora and PEFT itself, both ways, on checkpoints written by
 * transformers: an adapter that PEFT saved loads here and gives PEFT's logits; one that
 * torch-lora saved loads in PEFT with every factor found and gives the same logits, loss and
 * factor gradients; `mergeAndUnload` and `torch-lora merge` give the weights of PEFT's
 * `merge_and_unload`.
 */
import * as fs from "fs";
import * as path from "path";
import { Tensor, lora, manualSeed, models, noGrad, optim, randn, tensor } from "../../lib";
import type { Module } from "../../lib/nn";
import { ensureBuilt, runCli } from "../cli/run-cli";
import { makeTempDir } from "../helpers/temp";
import { atRealTokens, relativeError } from "../models/support/reference";
import { PADDED_IDS, PADDED_LABELS, PADDED_MASK, TINY_GPT2, TINY_LLAMA, paddedIds, paddedMask } from "../models/support/tiny-checkpoints";
import { describeHf, hfOne } from "./support/hf";

const GPT2 = { ...TINY_GPT2, bos_token_id: null, eos_token_id: null };
const LLAMA = { ...TINY_LLAMA, bos_token_id: null, eos_token_id: null };
const [IDS, MASK, LABELS] = [PADDED_IDS, PADDED_MASK, PADDED_LABELS];
const [ids, mask] = [paddedIds, paddedMask];

interface Forward {
  logits: number[];
  shape: number[];
  loss: number;
  grads: Record<string, number[]>;
  adapter_config: Record<string, unknown>;
}

let root: string;
const bases = new Map<string, string>();
beforeAll(() => {
  root = makeTempDir("tl-interop-peft-");
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

/** A checkpoint of `config` written by transformers (once per config). */
function base(config: Record<string, unknown>): string {
  const dir = path.join(root, `base-${config.model_type as string}`);
  if (!bases.has(dir)) {
    hfOne({ op: "make", dir, config, seed: 5 });
    bases.set(dir, dir);
  }
  return dir;
}

const logitsError = (ours: Tensor, theirs: { logits: number[]; shape: number[] }) =>
  relativeError(atRealTokens(ours.toList() as number[], theirs.shape, MASK), atRealTokens(theirs.logits, theirs.shape, MASK));

describeHf("adapters between torch-lora and PEFT", () => {
  test.each([
    ["gpt2, PEFT's default target (c_attn, Conv1D: fan_in_fan_out)", GPT2, { r: 4, lora_alpha: 8 }],
    [
      "llama, embedding and linear targets, rsLoRA, rank and alpha patterns",
      LLAMA,
      {
        r: 4,
        lora_alpha: 8,
        target_modules: ["embed_tokens", "q_proj", "v_proj", "down_proj"],
        use_rslora: true,
        rank_pattern: { q_proj: 2 },
        alpha_pattern: { down_proj: 3 },
      },
    ],
    ["llama, DoRA on q_proj and v_proj", LLAMA, { r: 4, lora_alpha: 8, target_modules: ["q_proj", "v_proj"], use_dora: true }],
  ])("%s: PEFT saves, torch-lora loads: PEFT's logits", async (name, config, loraConfig) => {
    const dir = base(config);
    const adapterDir = path.join(root, `peft-${name.split(",")[0]}-${Object.keys(loraConfig).length}`);
    const theirs = hfOne<Forward>({ op: "peft_adapter", dir, out: adapterDir, lora: loraConfig, ids: IDS, mask: MASK, seed: 9 });
    const model = await models.fromPretrained(dir);
    const plain = model.forward(ids(), { attentionMask: mask() });
    const peft = lora.loadAdapter(model, adapterDir);
    expect(peft.loraLayers().length).toBeGreaterThan(0);
    const adapted = model.forward(ids(), { attentionMask: mask() });
    expect(logitsError(adapted, theirs)).toBeLessThan(1e-5);
    expect(logitsError(plain, theirs)).toBeGreaterThan(1e-3); // the adapter does change the output
  });

  test.each([
    ["gpt2, default target", GPT2, { r: 4, loraAlpha: 8 }],
    [
      "llama, embedding and linear targets, rsLoRA",
      LLAMA,
      { r: 4, loraAlpha: 8, targetModules: ["embed_tokens", "q_proj", "v_proj", "o_proj"], useRslora: true },
    ],
    ["llama, DoRA", LLAMA, { r: 2, loraAlpha: 4, targetModules: ["q_proj", "v_proj"], useDora: true }],
  ])("%s: torch-lora saves, PEFT loads every factor: same logits, loss and factor gradients", async (name, config, options) => {
    const dir = base(config);
    manualSeed(21);
    const model = await models.fromPretrained(dir);
    const peft = lora.injectAdapter(model, options);
    // B starts at zero, and DoRA's magnitude at the weight's row norms: move every factor, so that a
    // factor read from the wrong place, or not read, shows.
    const moved = (l: lora.LoraLayer<Module & { weight: Tensor }>) => [
      ...l.factors("default"),
      ...(l.magnitude("default") ? [l.magnitude("default") as Tensor] : []),
    ];
    noGrad(() => peft.loraLayers().forEach(([, l]) => moved(l).forEach((f) => f.add_(randn(f.shape).mul(0.2)))));
    const logits = model.forward(ids(), { attentionMask: mask() });
    const loss = models.causalLmLoss(logits, tensor(LABELS, { dtype: "int64" }));
    loss.backward();
    const adapterDir = path.join(root, `ours-${name.split(",")[0]}-${Object.keys(options).length}`);
    lora.saveAdapter(peft, adapterDir);
    const theirs = hfOne<Forward>({ op: "forward", dir, adapter: adapterDir, ids: IDS, mask: MASK, labels: LABELS });
    expect(theirs.adapter_config).toMatchObject({
      peft_type: "LORA",
      task_type: "CAUSAL_LM",
      base_model_name_or_path: dir,
      r: options.r,
      lora_alpha: options.loraAlpha,
    });
    expect(logitsError(logits, theirs)).toBeLessThan(1e-5);
    expect(Math.abs(loss.item() - theirs.loss) / theirs.loss).toBeLessThan(1e-5);
    // Every factor of ours has its gradient on PEFT's side, and PEFT has no factor we lack.
    const ourGrads = new Map<string, Tensor>();
    for (const [p, layer] of peft.loraLayers()) {
      const [A, B] = layer.factors("default");
      const embedding = layer instanceof lora.LoraEmbedding;
      ourGrads.set(embedding ? `${p}.lora_embedding_A.default` : `${p}.lora_A.default.weight`, A.grad as Tensor);
      ourGrads.set(embedding ? `${p}.lora_embedding_B.default` : `${p}.lora_B.default.weight`, B.grad as Tensor);
      const magnitude = layer.magnitude("default");
      if (magnitude) ourGrads.set(`${p}.lora_magnitude_vector.default.weight`, magnitude.grad as Tensor);
    }
    expect(Object.keys(theirs.grads).sort()).toEqual([...ourGrads.keys()].sort());
    for (const [key, grad] of ourGrads) expect(relativeError(grad, theirs.grads[key])).toBeLessThan(1e-4);
  });

  test("five AdamW steps from the same adapter, with torch-lora (model.loss) and with PEFT and torch.optim.AdamW: the same losses and trained factors", async () => {
    const dir = base(LLAMA);
    manualSeed(33);
    const model = await models.fromPretrained(dir);
    const peft = lora.injectAdapter(model, { r: 4, loraAlpha: 8, targetModules: ["q_proj", "v_proj", "down_proj"] });
    noGrad(() => peft.loraLayers().forEach(([, l]) => l.factors("default")[1].copy_(randn(l.factors("default")[1].shape).mul(0.1))));
    const adapterDir = path.join(root, "before-training");
    lora.saveAdapter(peft, adapterDir);
    const theirs = hfOne<{ losses: number[]; factors: Record<string, number[]> }>({
      op: "train",
      dir,
      adapter: adapterDir,
      ids: IDS,
      mask: MASK,
      labels: LABELS,
      steps: 5,
      adamw: { lr: 0.01, betas: [0.9, 0.99], eps: 1e-8, weight_decay: 0.05 },
    });
    const opt = new optim.AdamW(peft.trainableParameters(), { lr: 0.01, betas: [0.9, 0.99], eps: 1e-8, weightDecay: 0.05 });
    const losses: number[] = [];
    for (let step = 0; step < 5; step++) {
      opt.zeroGrad();
      // model.loss, the chunked head and cross-entropy, against PEFT's model(ids, labels=labels).loss
      const loss = model.loss(ids(), { attentionMask: mask(), labels: tensor(LABELS, { dtype: "int64" }) });
      loss.backward();
      opt.step();
      losses.push(loss.item());
    }
    expect(losses[4]).toBeLessThan(losses[0] - 0.01); // it trained
    losses.forEach((l, i) => expect(Math.abs(l - theirs.losses[i]) / theirs.losses[i]).toBeLessThan(1e-5));
    const ours = peft.loraLayers().flatMap(([p, layer]) => {
      const [A, B] = layer.factors("default");
      return [
        [`${p}.lora_A.default.weight`, A],
        [`${p}.lora_B.default.weight`, B],
      ] as [string, Tensor][];
    });
    expect(ours.map(([k]) => k).sort()).toEqual(Object.keys(theirs.factors).sort());
    for (const [key, factor] of ours) expect(relativeError(factor, theirs.factors[key])).toBeLessThan(1e-4);
  });

  test("two adapters in one PEFT folder (the second in its subfolder), one targeted by a regex string: each gives PEFT's logits when active", async () => {
    const dir = base(LLAMA);
    const adapterDir = path.join(root, "peft-two-adapters");
    const theirs = hfOne<Forward & { by_adapter: Record<string, number[]> }>({
      op: "peft_adapter",
      dir,
      out: adapterDir,
      lora: { r: 4, lora_alpha: 8, target_modules: String.raw`.*layers\.1\.self_attn\.(q_proj|o_proj)` },
      more: { second: { r: 2, lora_alpha: 6, target_modules: ["v_proj", "up_proj"] } },
      ids: IDS,
      mask: MASK,
      seed: 13,
    });
    expect(fs.existsSync(path.join(adapterDir, "second", "adapter_model.safetensors"))).toBe(true);
    const model = await models.fromPretrained(dir);
    const peft = lora.loadAdapter(lora.loadAdapter(model, adapterDir), adapterDir, { adapterName: "second" });
    expect(peft.adapterNames).toEqual(["default", "second"]);
    expect(
      peft
        .loraLayers()
        .filter(([, l]) => l.adapterNames.includes("default"))
        .map(([p]) => p),
    ).toEqual(["model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.o_proj"]);
    for (const name of ["default", "second"]) {
      peft.setAdapter(name);
      expect(logitsError(model.forward(ids(), { attentionMask: mask() }), { logits: theirs.by_adapter[name], shape: theirs.shape })).toBeLessThan(1e-5);
    }
  });

  test("merged weights equal PEFT's merge_and_unload: torch-lora merge and mergeAndUnload for LoRA (GPT-2's Conv1D, Llama), mergeAndUnload for DoRA", async () => {
    ensureBuilt();
    for (const [config, useDora] of [
      [GPT2, false],
      [LLAMA, false],
      [LLAMA, true],
    ] as const) {
      const dir = base(config);
      const kind = `${config.model_type}-${useDora ? "dora" : "lora"}`;
      const adapterDir = path.join(root, `merge-${kind}`);
      const targets = config.model_type === "gpt2" ? ["c_attn", "c_fc"] : ["q_proj", "k_proj", "gate_proj"];
      hfOne({
        op: "peft_adapter",
        dir,
        out: adapterDir,
        lora: { r: 4, lora_alpha: 8, target_modules: targets, use_dora: useDora },
        ids: IDS,
        mask: MASK,
        seed: 4,
      });
      const viaApi = lora
        .loadAdapter(await models.fromPretrained(dir), adapterDir)
        .mergeAndUnload()
        .stateDict();
      const keys = Object.keys(viaApi).filter((k) => targets.some((t) => k.includes(`.${t}.weight`)));
      expect(keys.length).toBe(2 * targets.length);
      const theirs = hfOne<{ weights: Record<string, number[]> }>({ op: "merge", dir, adapter: adapterDir, keys });
      for (const k of keys) expect(relativeError(viaApi[k], theirs.weights[k])).toBeLessThan(1e-6);

      // The merge from files: the same weights, or (DoRA) a refusal that names the way that works.
      const out = path.join(root, `merged-${kind}`);
      const r = runCli(["merge", "--base", dir, "--adapter", adapterDir, "--out", out]);
      if (useDora) {
        expect(r.code).toBe(1);
        expect(r.stderr).toMatch(/use_dora = true is not supported by the merge from files .*load the adapter with loadAdapter and call mergeAndUnload\(\)/);
        expect(fs.existsSync(out)).toBe(false);
        continue;
      }
      if (r.code !== 0) throw new Error(`torch-lora merge failed (${r.code}): ${r.stderr}`);
      const viaCli = (await models.fromPretrained(out)).stateDict();
      for (const k of keys) expect(relativeError(viaCli[k], theirs.weights[k])).toBeLessThan(1e-6);
    }
  });
});
