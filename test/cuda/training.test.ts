/** Training on the GPU: optimizer steps against the CPU, a fine-tuning run, adapters saved from the GPU, the demo. */
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { Tensor, crossEntropy, init, linearCrossEntropy, lora, manualSeed, models, noGrad, optim, randn, tensor } from "../../lib";
import type { Device } from "../../lib";
import { VOCAB, batchAt, encode, generateText, makeExamples } from "../../demo/data";
import { CharModel } from "../../demo/model";
import { evaluate, train } from "../../demo/train";
import { GPU, describeCuda } from "../helpers/cuda";
import { TinyModel, changedParameters, snapshot } from "../helpers/models";
import { expectDemoClaims, recomputeDemo } from "../helpers/demo-checks";
import { tinyByFormula } from "../helpers/lora-formula";
import { makeTempDir } from "../helpers/temp";
import { TINY_GPT2 } from "../models/support/tiny-checkpoints";

const ROOT = path.resolve(__dirname, "../..");

/** Sets `p.grad` to exactly `g`: the gradient of Σ p·g. */
function setGrad(p: Tensor, g: Tensor): void {
  p.grad = null;
  p.mul(g).sum().backward();
}

/** The same parameters, with the same gradients, on `device`. */
function paramsWithGrads(device: Device): Tensor[] {
  manualSeed(31);
  const shapes = [[16, 8], [8], [4, 16]];
  return shapes.map((shape) => {
    const p = randn(shape).to({ device });
    p.requiresGrad = true;
    setGrad(p, randn(shape).mul(3).to({ device }));
    return p;
  });
}

/** Runs `steps` optimizer steps, with fresh gradients drawn on the CPU, and returns the parameters on the CPU. */
function runOptimizer(device: Device, make: (ps: Tensor[]) => optim.Optimizer, steps = 5): Tensor[] {
  const ps = paramsWithGrads(device);
  const opt = make(ps);
  for (let i = 0; i < steps; i++) {
    opt.step();
    manualSeed(100 + i);
    for (const p of ps) setGrad(p, randn(p.shape).to({ device }));
  }
  return ps.map((p) => p.detach().cpu());
}

/** The values runOptimizer starts from and feeds, drawn again on the CPU: [start, first grad, later grads per step]. */
function drawnValues(steps: number): { start: number[][]; grads: number[][][] } {
  const list = (t: Tensor): number[] => Array.from(t.to({ dtype: "float64" }).toArray() as Float64Array);
  const ps = paramsWithGrads("cpu");
  const start = ps.map((p) => list(p.detach()));
  const grads = [ps.map((p) => list(p.grad!))];
  for (let i = 0; i < steps - 1; i++) {
    manualSeed(100 + i);
    grads.push(ps.map((p) => list(randn(p.shape))));
  }
  return { start, grads };
}

/** AdamW by its published formulas (decoupled decay, bias-corrected moments), in float64 JS numbers. */
function adamwByHand(steps: number, lr: number, [b1, b2]: [number, number], wd: number, eps = 1e-8): number[][] {
  const { start, grads } = drawnValues(steps);
  return start.map((p0, j) => {
    const p = p0.slice();
    const m = p.map(() => 0);
    const v = p.map(() => 0);
    for (let t = 1; t <= steps; t++) {
      grads[t - 1][j].forEach((g, k) => {
        p[k] *= 1 - lr * wd;
        m[k] = b1 * m[k] + (1 - b1) * g;
        v[k] = b2 * v[k] + (1 - b2) * g * g;
        p[k] -= (lr * (m[k] / (1 - b1 ** t))) / (Math.sqrt(v[k] / (1 - b2 ** t)) + eps);
      });
    }
    return p;
  });
}

/** SGD with weight decay and Nesterov momentum (buffer = gradient at the first step), in float64. */
function sgdByHand(steps: number, lr: number, momentum: number, wd: number): number[][] {
  const { start, grads } = drawnValues(steps);
  return start.map((p0, j) => {
    const p = p0.slice();
    const buf = p.map(() => 0);
    for (let t = 1; t <= steps; t++) {
      grads[t - 1][j].forEach((g0, k) => {
        const g = g0 + wd * p[k];
        buf[k] = t === 1 ? g : momentum * buf[k] + g;
        p[k] -= lr * (g + momentum * buf[k]);
      });
    }
    return p;
  });
}

/** Expects float32 results within `rel` (relative to 1 + |value|) of float64 hand-computed ones. */
function expectNearHand(actual: Tensor[], byHand: number[][], rel: number): void {
  actual.forEach((a, i) => {
    const got = Array.from(a.to({ dtype: "float64" }).toArray() as Float64Array);
    const worst = got.reduce((w, v, k) => Math.max(w, Math.abs(v - byHand[i][k]) / (1 + Math.abs(byHand[i][k]))), 0);
    expect({ param: i, within: worst <= rel }).toEqual({ param: i, within: true });
  });
}

function expectClose(actual: Tensor[], expected: Tensor[], tolerance: { rtol: number; atol: number }): void {
  expect(actual.length).toBe(expected.length);
  actual.forEach((a, i) => expect([i, a.allclose(expected[i], tolerance)]).toEqual([i, true]));
}

describeCuda("optimizers on cuda:0", () => {
  const tolerance = { rtol: 1e-5, atol: 1e-6 };

  test("5 AdamW steps on the GPU land where they land on the CPU and where the formulas put them", () => {
    const make = (ps: Tensor[]) => new optim.AdamW(ps, { lr: 0.05, betas: [0.8, 0.95], weightDecay: 0.1 });
    const gpu = runOptimizer(GPU, make);
    const cpu = runOptimizer("cpu", make);
    expectClose(gpu, cpu, tolerance);
    expectNearHand(gpu, adamwByHand(5, 0.05, [0.8, 0.95], 0.1), 1e-5);
    // And they moved: a step that did nothing would also agree.
    expect(gpu[0].equal(paramsWithGrads("cpu")[0].detach())).toBe(false);
  });

  test("5 SGD steps with momentum and Nesterov on the GPU land where they land on the CPU and where the formulas put them", () => {
    const make = (ps: Tensor[]) => new optim.SGD(ps, { lr: 0.1, momentum: 0.9, nesterov: true, weightDecay: 0.01 });
    const gpu = runOptimizer(GPU, make);
    expectClose(gpu, runOptimizer("cpu", make), tolerance);
    expectNearHand(gpu, sgdByHand(5, 0.1, 0.9, 0.01), 1e-5);
  });

  test("clipGradNorm on the GPU returns the CPU's norm and scales the gradients alike", () => {
    const gpu = paramsWithGrads(GPU);
    const cpu = paramsWithGrads("cpu");
    const normGpu = optim.clipGradNorm(gpu, 1.0);
    const normCpu = optim.clipGradNorm(cpu, 1.0);
    const relative = (a: number, b: number) => Math.abs(a / b - 1);
    expect(relative(normGpu, normCpu)).toBeLessThan(1e-5);
    // By hand: the total norm is √Σ g² (summed here in float64), and it is well above 1, so clipping scales.
    const byHand = Math.sqrt(paramsWithGrads("cpu").reduce((s, p) => s + Array.from(p.grad!.toArray() as Float32Array).reduce((t, v) => t + v * v, 0), 0));
    expect(byHand).toBeGreaterThan(10);
    expect(relative(normGpu, byHand)).toBeLessThan(1e-5);
    expectClose(
      gpu.map((p) => p.grad!.cpu()),
      cpu.map((p) => p.grad!),
      tolerance,
    );
    const clipped = Math.sqrt(gpu.reduce((s, p) => s + p.grad!.pow(2).sum().item(), 0));
    expect(relative(clipped, 1)).toBeLessThan(1e-5);
  });
});

describeCuda("LoRA training on cuda:0", () => {
  const CONTEXT = 8;
  const MODEL = { vocab: VOCAB, context: CONTEXT, embeddingDim: 16, hidden: 64 };
  const examples = (count: number, seed: number) => {
    const e = makeExamples(encode(generateText("B", count, seed)), CONTEXT);
    return { ...e, inputs: e.inputs.to({ device: GPU }), targets: e.targets.to({ device: GPU }) };
  };

  test("fine-tuning on the GPU lowers the loss and changes only the adapters", () => {
    manualSeed(0);
    const model = new CharModel(MODEL).to({ device: GPU });
    const evalSet = examples(100, 4);
    const before = evaluate(model, evalSet);
    const base = snapshot(model);
    const lm = lora.injectAdapter(model, { r: 8, loraAlpha: 16, targetModules: ["emb", "fc1", "fc2"] });
    for (const [name, p] of lm.namedParameters()) expect([name, p.device]).toEqual([name, GPU]);
    train(lm, examples(400, 3), { steps: 60, batchSize: 128, lr: 1e-2, label: "gpu", quiet: true });
    expect(evaluate(lm, evalSet)).toBeLessThan(0.7 * before);
    const baseNames = new Map([...base].map(([n, b]) => [n.replace(/^(emb|fc1|fc2)\./, "$1.base_layer."), b]));
    expect(changedParameters(baseNames, snapshot(model))).toEqual([]);
  });

  test("one training step on the GPU gives the CPU's loss and adapter update, and the formula's", () => {
    const step = (device: Device) => {
      manualSeed(6);
      const model = new TinyModel();
      const lm = lora.injectAdapter(model, { r: 4, loraAlpha: 8, targetModules: ["emb", "fc1", "head"] });
      for (const [, layer] of lm.loraLayers()) init.normal_(layer.factors("default")[1], 0, 0.2);
      lm.to({ device });
      // SGD: its update is linear in the gradient. AdamW's first step is lr·g/(|g|+eps), which
      // turns a gradient near zero that the devices round differently into a full-size difference
      // (the AdamW test above uses gradients far from zero).
      const opt = new optim.SGD(lm.trainableParameters(), { lr: 0.5, momentum: 0.9 });
      const ids = tensor(
        [
          [1, 2, 3],
          [4, 5, 6],
        ],
        { dtype: "int64", device },
      );
      const target = tensor([2, 3, 4, 5, 6, 7], { dtype: "int64", device });
      // The formula with plain ops on a CPU copy of the same model: its loss, and the first SGD
      // step by hand (momentum's buffer starts as the gradient): p − lr·g.
      const copy = lora.injectAdapter(new TinyModel(), { r: 4, loraAlpha: 8, targetModules: ["emb", "fc1", "head"] });
      copy.loadStateDict(Object.fromEntries(Object.entries(lm.stateDict()).map(([k, v]) => [k, v.cpu()])));
      const formulaLoss = crossEntropy(tinyByFormula(copy, ids.cpu()).reshape([6, -1]), target.cpu());
      formulaLoss.backward();
      const byHand = copy.trainableParameters().map((p) => p.detach().sub(p.grad!.mul(0.5)));
      const loss = crossEntropy((lm.forward(ids) as Tensor).reshape([6, -1]), target);
      loss.backward();
      opt.step();
      return { loss: loss.item(), formulaLoss: formulaLoss.item(), byHand, adapters: lm.trainableParameters().map((p) => p.detach().cpu()) };
    };
    const gpu = step(GPU);
    const cpu = step("cpu");
    expect(gpu.loss).toBeCloseTo(cpu.loss, 5);
    expect(gpu.loss).toBeCloseTo(gpu.formulaLoss, 5);
    expectClose(gpu.adapters, cpu.adapters, { rtol: 1e-4, atol: 1e-6 });
    expectClose(gpu.adapters, gpu.byHand, { rtol: 1e-4, atol: 1e-6 });
  });

  test("an adapter saved from the GPU loads into a CPU model and computes the same outputs", () => {
    manualSeed(12);
    const model = new TinyModel();
    const baseState = model.stateDict();
    const lm = lora.injectAdapter(model, { r: 4, loraAlpha: 8, targetModules: ["emb", "fc1", "head"] });
    for (const [, layer] of lm.loraLayers()) init.normal_(layer.factors("default")[1], 0, 0.3);
    lm.eval();
    lm.to({ device: GPU });
    const dir = makeTempDir("tl-gpu-adapter-");
    try {
      lm.saveAdapter(dir);
      const fresh = new TinyModel();
      fresh.loadStateDict(baseState);
      const loaded = lora.loadAdapter(fresh, dir);
      loaded.eval();
      const ids = [
        [1, 2, 3, 4],
        [5, 6, 7, 8],
      ];
      const onGpu = lm.forward(tensor(ids, { dtype: "int64", device: GPU })).cpu();
      const onCpu = loaded.forward(tensor(ids, { dtype: "int64" }));
      expect(onCpu.allclose(onGpu, { rtol: 1e-4, atol: 1e-5 })).toBe(true);
      expect(onCpu.allclose(tinyByFormula(loaded, tensor(ids, { dtype: "int64" })), { rtol: 1e-5, atol: 1e-5 })).toBe(true);
      // The saved factors are the GPU factors, byte for byte.
      const saved = new Map(
        loaded
          .namedParameters()
          .filter(([n]) => n.includes("lora_"))
          .map(([n, p]) => [n, p.toBytes()]),
      );
      expect(changedParameters(saved, snapshot(lm))).toEqual([]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a batch of examples is taken on the device it lives on", () => {
    const e = examples(50, 1);
    const { inputs, targets } = batchAt(e, 0, 8);
    expect([inputs.device, targets.device]).toEqual([GPU, GPU]);
  });
});

describeCuda("the demo on cuda:0", () => {
  test("npm run demo -- --device cuda:0 --quick: its checks hold when recomputed from the files it writes", () => {
    const out = makeTempDir("tl-gpu-demo-");
    try {
      const r = spawnSync(process.execPath, [path.join(ROOT, "dist/demo/main.js"), "--device", GPU, "--quick", "--save-base", "--out", out], {
        encoding: "utf8",
        timeout: 180_000,
      });
      expect({ status: r.status, tail: r.status === 0 ? "" : `${r.stdout}\n${r.stderr}`.slice(-2000) }).toEqual({ status: 0, tail: "" });
      expect(r.stdout).toContain(`device ${GPU}`);
      expectDemoClaims(recomputeDemo(out, GPU), r.stdout);
    } finally {
      fs.rmSync(out, { recursive: true, force: true });
    }
  }, 240_000);
});

describeCuda("the chunked loss on cuda:0", () => {
  test("linearCrossEntropy gives the CPU's loss and gradients, and CausalLM.loss the unfused loss", () => {
    const make = (device: Device) => {
      manualSeed(5);
      const hidden = randn([40, 16]).mul(0.5).to({ device });
      hidden.requiresGrad = true;
      const weight = randn([300, 16]).mul(0.3).to({ device });
      weight.requiresGrad = true;
      const target = tensor(
        Array.from({ length: 40 }, (_, i) => (i % 7 === 3 ? -100 : (i * 41) % 300)),
        { dtype: "int64", device },
      );
      const loss = linearCrossEntropy(hidden, weight, target, { chunkRows: 16 });
      loss.backward();
      return { loss: loss.item(), hidden: hidden.grad!.cpu(), weight: weight.grad!.cpu() };
    };
    const gpu = make(GPU);
    const cpu = make("cpu");
    expect(Math.abs(gpu.loss - cpu.loss) / cpu.loss).toBeLessThan(1e-5);
    expect(gpu.hidden.allclose(cpu.hidden, { rtol: 1e-4, atol: 1e-6 })).toBe(true);
    expect(gpu.weight.allclose(cpu.weight, { rtol: 1e-4, atol: 1e-6 })).toBe(true);

    const model = new models.GPT2LMHeadModel({ ...TINY_GPT2, resid_pdrop: 0, embd_pdrop: 0, attn_pdrop: 0 }).to({ device: GPU });
    const ids = tensor([[5, 17, 3, 42, 8, 8, 29, 1]], { dtype: "int64", device: GPU });
    const fused = noGrad(() => model.loss(ids).item());
    const unfused = noGrad(() => models.causalLmLoss(model.forward(ids), ids).item());
    expect(Math.abs(fused - unfused) / unfused).toBeLessThan(1e-5);
  });
});
