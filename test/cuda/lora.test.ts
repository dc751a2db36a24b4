/**
 * LoRA on the GPU: forward/backward against the CPU and against the formula computed with plain
 * ops (test/helpers/lora-formula.ts), merges against W + s·BA, merge/unmerge exactness on cuda:0.
 * During a rehearsal on the CPU, the formula is what keeps these comparisons from being CPU
 * against CPU through the same kernels.
 */
import { Tensor, crossEntropy, init, lora, manualSeed, tensor } from "../../lib";
import type { Device, Dtype } from "../../lib";
import { GPU, describeCuda, describeCudaOnly } from "../helpers/cuda";
import { TinyModel, snapshot, changedParameters } from "../helpers/models";
import { mergedByFormula, tinyByFormula } from "../helpers/lora-formula";

type AnyLayer = lora.LoraLayer<never>;

/** Expects every adapted layer's weight to equal W + s·BA computed on the CPU from `pristine` copies. */
function expectMergedByFormula(lm: lora.LoraModel, pristine: Map<string, Tensor>): void {
  for (const [name, layer] of lm.loraLayers()) {
    const want = mergedByFormula(layer as AnyLayer, pristine.get(name)!).to({ device: "cpu" });
    const got = layer.base_layer.weight.cpu();
    expect([name, got.allclose(want.to({ dtype: got.dtype }), { rtol: 1e-5, atol: 1e-5 })]).toEqual([name, true]);
  }
}

/** CPU copies of every adapted layer's base weight. */
function pristineWeights(lm: lora.LoraModel): Map<string, Tensor> {
  return new Map(lm.loraLayers().map(([name, layer]) => [name, layer.base_layer.weight.detach().cpu().clone()]));
}

const ids = (device: Device) =>
  tensor(
    [
      [1, 2, 3, 4],
      [5, 6, 7, 8],
    ],
    { dtype: "int64", device },
  );

/** A TinyModel with adapters on all layers and nonzero B, on the CPU. */
function adaptedOnCpu(dtype: Dtype = "float32") {
  manualSeed(21);
  const model = new TinyModel({ dtype, activation: dtype !== "float16" });
  const lm = lora.injectAdapter(model, { r: 4, loraAlpha: 8, targetModules: ["emb", "fc1", "head"] });
  for (const [, layer] of lm.loraLayers()) init.normal_(layer.factors("default")[1], 0, 0.3);
  lm.eval();
  return { model, lm };
}

describeCuda("LoRA on cuda:0", () => {
  test("module.to('cuda:0') moves base weights and adapter factors", () => {
    const { lm } = adaptedOnCpu();
    lm.to({ device: GPU });
    for (const [name, p] of lm.namedParameters()) expect([name, p.device]).toEqual([name, GPU]);
  });

  test("forward and backward on the GPU match the same model on the CPU and the formula with plain ops", () => {
    const cpu = adaptedOnCpu();
    const gpu = adaptedOnCpu();
    gpu.lm.to({ device: GPU });
    const target = (device: Device) => tensor([3, 0, 7, 1, 2, 9, 4, 5], { dtype: "int64", device });
    const outCpu = cpu.lm.forward(ids("cpu"));
    const outGpu = gpu.lm.forward(ids(GPU));
    expect(outGpu.device).toBe(GPU);
    expect(outGpu.cpu().allclose(outCpu, { rtol: 1e-4, atol: 1e-5 })).toBe(true);
    crossEntropy(outCpu.reshape([8, -1]), target("cpu")).backward();
    crossEntropy(outGpu.reshape([8, -1]), target(GPU)).backward();
    const gradsCpu = new Map(
      cpu.lm
        .namedParameters()
        .filter(([, p]) => p.requiresGrad)
        .map(([n, p]) => [n, p.grad!.clone()]),
    );
    const trainable = gpu.lm.namedParameters().filter(([, p]) => p.requiresGrad);
    expect(trainable.length).toBe(6);
    for (const [name, p] of trainable) {
      expect(p.grad!.device).toBe(GPU);
      expect([name, p.grad!.cpu().allclose(gradsCpu.get(name)!, { rtol: 1e-4, atol: 1e-5 })]).toEqual([name, true]);
    }
    // The formula with plain ops, on the CPU copy: its output and its autograd gradients.
    for (const [, p] of cpu.lm.namedParameters()) p.grad = null;
    const byFormula = tinyByFormula(cpu.lm, ids("cpu"));
    expect(outGpu.cpu().allclose(byFormula, { rtol: 1e-4, atol: 1e-5 })).toBe(true);
    crossEntropy(byFormula.reshape([8, -1]), target("cpu")).backward();
    const formulaGrads = new Map(
      cpu.lm
        .namedParameters()
        .filter(([, p]) => p.requiresGrad)
        .map(([n, p]) => [n, p.grad!]),
    );
    for (const [name, p] of trainable) {
      expect([name, "formula", p.grad!.cpu().allclose(formulaGrads.get(name)!, { rtol: 1e-4, atol: 1e-5 })]).toEqual([name, "formula", true]);
    }
  });

  test("unmerged forward on the GPU equals the formula, and merged forward equals unmerged", () => {
    const { lm } = adaptedOnCpu();
    lm.to({ device: GPU });
    const unmerged = lm.forward(ids(GPU)) as Tensor;
    const byFormula = tinyByFormula(lm, ids(GPU)).cpu();
    expect(unmerged.cpu().allclose(byFormula, { rtol: 1e-5, atol: 1e-5 })).toBe(true);
    lm.merge();
    expect(lm.forward(ids(GPU)).allclose(unmerged, { rtol: 1e-5, atol: 1e-5 })).toBe(true);
  });

  for (const dtype of ["float32", "float16", "bfloat16"] as Dtype[]) {
    test(`unmerge on the GPU restores every weight bit for bit after 5 cycles (${dtype})`, () => {
      const { model, lm } = adaptedOnCpu(dtype);
      lm.to({ device: GPU });
      const before = snapshot(model);
      for (let i = 0; i < 5; i++) {
        lm.merge();
        expect(changedParameters(before, snapshot(model)).length).toBeGreaterThan(0);
        lm.unmerge();
        expect([i, changedParameters(before, snapshot(model))]).toEqual([i, []]);
      }
    });
  }

  test("the merged GPU weights equal W + s·BA (s·(BA)ᵀ for the embedding) computed on the CPU", () => {
    const { model, lm } = adaptedOnCpu();
    const fc1 = model.fc1 as unknown as lora.LoraLinear;
    const [A, B] = fc1.factors("default").map((t) => t.clone());
    const expected = fc1.base_layer.weight.add(B.matmul(A).mul(2));
    const pristine = pristineWeights(lm);
    lm.to({ device: GPU });
    lm.merge();
    expect(fc1.base_layer.weight.device).toBe(GPU);
    expect(fc1.base_layer.weight.cpu().allclose(expected, { rtol: 1e-5, atol: 1e-5 })).toBe(true);
    expectMergedByFormula(lm, pristine);
  });

  test("a model moved back to the CPU computes what it computed on the GPU, and the formula", () => {
    const { lm } = adaptedOnCpu();
    lm.to({ device: GPU });
    const onGpu = lm.forward(ids(GPU)).cpu();
    lm.to({ device: "cpu" });
    const onCpu = lm.forward(ids("cpu")) as Tensor;
    expect(onCpu.allclose(onGpu, { rtol: 1e-4, atol: 1e-5 })).toBe(true);
    expect(onCpu.allclose(tinyByFormula(lm, ids("cpu")), { rtol: 1e-5, atol: 1e-5 })).toBe(true);
  });
});

describeCuda("LoRA on cuda:0: async merges and embeddings", () => {
  test("mergeAsync/unmergeAsync on the GPU give the bytes of merge/unmerge, and W + s·BA", async () => {
    const sync = adaptedOnCpu();
    const async_ = adaptedOnCpu();
    sync.lm.to({ device: GPU });
    async_.lm.to({ device: GPU });
    const before = snapshot(async_.model);
    const pristine = pristineWeights(async_.lm);
    sync.lm.merge();
    await async_.lm.mergeAsync();
    expect(changedParameters(snapshot(sync.model), snapshot(async_.model))).toEqual([]);
    expectMergedByFormula(async_.lm, pristine);
    await async_.lm.unmergeAsync();
    expect(changedParameters(before, snapshot(async_.model))).toEqual([]);
  });

  test("a padding token's embedding output and gradient stay at the base on the GPU", () => {
    manualSeed(8);
    const model = new TinyModel({ paddingIdx: 0 });
    const lm = lora.injectAdapter(model, { r: 4, loraAlpha: 8, targetModules: ["emb"] });
    const emb = model.emb as unknown as lora.LoraEmbedding;
    // B only: injection zeroes A's padding column (the "a-normal" mode), which keeps that token at the base.
    init.normal_(emb.factors("default")[1], 0, 0.5);
    lm.to({ device: GPU });
    const tokens = tensor([0, 3, 0, 5], { dtype: "int64", device: GPU });
    const out = emb.forward(tokens);
    const base = emb.base_layer.weight;
    // Rows 0 and 2 are the padding token: exactly the base row (zeros, as nn.Embedding's padding row).
    expect(out.narrow(0, 0, 1).equal(base.narrow(0, 0, 1))).toBe(true);
    expect(out.narrow(0, 2, 1).equal(base.narrow(0, 0, 1))).toBe(true);
    out.sum().backward();
    const [A] = emb.factors("default");
    // A is (r, vocab): its padding column gets no gradient.
    expect(A.grad!.narrow(1, 0, 1).abs().sum().item()).toBe(0);
    expect(A.grad!.narrow(1, 3, 1).abs().sum().item()).toBeGreaterThan(0);
  });
});

describeCudaOnly("LoRA on cuda:0: inputs on the wrong device", () => {
  test("a CPU input to a GPU layer is a clear error and changes nothing", () => {
    const { model, lm } = adaptedOnCpu();
    lm.to({ device: GPU });
    const before = snapshot(model);
    expect(() => lm.forward(ids("cpu"))).toThrow(/ids: expected a tensor on cuda:0 .*got one on cpu/);
    expect(changedParameters(before, snapshot(model))).toEqual([]);
  });
});
