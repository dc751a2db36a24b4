import { spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { Tensor, crossEntropy, lora, manualSeed, optim } from "../../lib";
import { VOCAB, encode, generateText, makeExamples, batchAt } from "../../demo/data";
import { CharModel } from "../../demo/model";
import { evaluate, train } from "../../demo/train";
import { changedParameters, snapshot } from "../helpers/models";
import { expectDemoClaims, recomputeDemo } from "../helpers/demo-checks";
import { makeTempDir } from "../helpers/temp";

const ROOT = path.resolve(__dirname, "../..");
const CONTEXT = 8;
const MODEL = { vocab: VOCAB, context: CONTEXT, embeddingDim: 16, hidden: 64 };
const examples = (task: "A" | "B", count: number, seed: number) => makeExamples(encode(generateText(task, count, seed)), CONTEXT);

function pretrained(): CharModel {
  manualSeed(0);
  const model = new CharModel(MODEL);
  train(model, examples("A", 800, 1), { steps: 120, batchSize: 128, lr: 3e-3, label: "pretrain", quiet: true });
  return model;
}

describe("LoRA training", () => {
  test("a short fine-tuning run lowers the task-B loss by a wide margin and changes only adapter parameters", () => {
    const model = pretrained();
    const evalB = examples("B", 100, 4);
    const before = evaluate(model, evalB);
    const baseBytes = snapshot(model);
    manualSeed(1);
    const lm = lora.injectAdapter(model, { r: 8, loraAlpha: 16, targetModules: ["emb", "fc1", "fc2"] });
    const baseNames = new Map([...baseBytes].map(([n, b]) => [n.replace(/^(emb|fc1|fc2)\./, "$1.base_layer."), b]));
    const adapterBytes = new Map(
      model
        .namedParameters()
        .filter(([n]) => n.includes("lora_"))
        .map(([n, p]) => [n, p.toBytes()]),
    );
    train(lm, examples("B", 400, 3), { steps: 80, batchSize: 128, lr: 5e-3, label: "finetune", quiet: true });
    const after = evaluate(lm, evalB);
    expect(after).toBeLessThan(0.5 * before);
    const now = snapshot(model);
    // Base weights: bit-identical. Adapter factors: every one of them moved.
    expect(changedParameters(baseNames, now)).toEqual([]);
    expect(changedParameters(adapterBytes, now).sort()).toEqual([...adapterBytes.keys()].sort());
  });

  test("saving the adapter and optimizer, reloading, and continuing gives the same next-step loss", async () => {
    const data = examples("B", 300, 3);
    const step = (model: lora.LoraModel, opt: optim.AdamW, i: number): number => {
      const { inputs, targets } = batchAt(data, i * 64, 64);
      const loss = crossEntropy(model.forward(inputs) as Tensor, targets);
      loss.backward();
      opt.step();
      opt.zeroGrad();
      return loss.item();
    };
    const baseState = pretrained().stateDict();
    const fresh = () => {
      const m = new CharModel(MODEL);
      m.loadStateDict(baseState);
      return m;
    };
    // Uninterrupted run: 6 steps.
    manualSeed(5);
    const a = lora.injectAdapter(fresh(), { r: 4, loraAlpha: 8, targetModules: ["emb", "fc1", "fc2"] });
    const optA = new optim.AdamW(a.trainableParameters(), { lr: 1e-2 });
    const losses = [0, 1, 2, 3, 4, 5].map((i) => step(a, optA, i));

    // Interrupted run: 3 steps, save adapter + optimizer state to disk, reload into a fresh model.
    manualSeed(5);
    const b = lora.injectAdapter(fresh(), { r: 4, loraAlpha: 8, targetModules: ["emb", "fc1", "fc2"] });
    const optB = new optim.AdamW(b.trainableParameters(), { lr: 1e-2 });
    [0, 1, 2].forEach((i) => step(b, optB, i));
    const dir = makeTempDir("tl-resume-");
    b.saveAdapter(dir);
    const sd = optB.stateDict();
    const optTensors: Record<string, Tensor> = {};
    sd.state.forEach((s, i) => {
      if (s) Object.assign(optTensors, { [`${i}.exp_avg`]: s.expAvg, [`${i}.exp_avg_sq`]: s.expAvgSq });
    });
    const { io } = await import("../../lib");
    io.saveSafetensorsSync(path.join(dir, "optimizer.safetensors"), optTensors, { steps: JSON.stringify(sd.state.map((s) => s?.step ?? 0)) });

    const c = await lora.loadAdapter(fresh(), dir, { isTrainable: true });
    const optC = new optim.AdamW(c.trainableParameters(), { lr: 1e-2 });
    const loaded = io.loadSafetensorsSync(path.join(dir, "optimizer.safetensors"));
    const steps = JSON.parse(io.loadSafetensorsMetadataSync(path.join(dir, "optimizer.safetensors"))!.steps) as number[];
    optC.loadStateDict({
      ...sd,
      state: steps.map((s, i) => ({ step: s, expAvg: loaded[`${i}.exp_avg`], expAvgSq: loaded[`${i}.exp_avg_sq`] })),
    });
    const resumed = [3, 4, 5].map((i) => step(c, optC, i));
    expect(resumed).toEqual(losses.slice(3));
  });
});

describe("npm run demo", () => {
  test("the shortened demo's checks hold when recomputed from the base and adapter it writes", () => {
    const out = makeTempDir("tl-demo-");
    try {
      const r = spawnSync(process.execPath, [path.join(ROOT, "dist/demo/main.js"), "--quick", "--save-base", "--out", out], {
        encoding: "utf8",
        timeout: 120000,
      });
      expect(r.stderr).toBe("");
      expect(r.status).toBe(0);
      expect(fs.readdirSync(out).sort()).toEqual(["adapter_config.json", "adapter_model.safetensors", "base.safetensors"]);
      expectDemoClaims(recomputeDemo(out, "cpu"), r.stdout);
      expect(r.stdout).not.toMatch(/✘/);
    } finally {
      fs.rmSync(out, { recursive: true, force: true });
    }
  }, 180_000);
});

describe("examples/finetune.ts", () => {
  // The example is documentation: this checks that it runs and what it reports. The claims it
  // prints (reload, merge) are the library's, tested on their own in test/peft and test/lora.
  test("runs to the end, its loss falls, and it reports its reload and merge checks as passed", () => {
    const r = spawnSync(process.execPath, [path.join(ROOT, "dist/examples/finetune.js")], { encoding: "utf8", timeout: 120000 });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    const losses = [...r.stdout.matchAll(/step \d+: loss ([\d.]+)/g)].map((m) => Number(m[1]));
    expect(losses.length).toBe(4);
    expect(losses[3]).toBeLessThan(losses[0]);
    expect(r.stdout).toMatch(/reloaded adapter gives identical outputs: true/);
    expect(r.stdout).toMatch(/merged model matches the adapter's outputs: true/);
  });
});
