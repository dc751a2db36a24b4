/** LoRA on the GPU: forward/backward against the CPU, merge/unmerge exactness on cuda:0. */
import { crossEntropy, init, lora, manualSeed, tensor } from "../../lib";
import type { Device, Dtype } from "../../lib";
import { GPU, describeCuda, describeCudaOnly } from "../helpers/cuda";
import { TinyModel, snapshot, changedParameters } from "../helpers/models";

const ids = (device: Device) => tensor([[1, 2, 3, 4], [5, 6, 7, 8]], { dtype: "int64", device });

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

  test("forward and backward on the GPU match the same model on the CPU", () => {
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
    const gradsCpu = new Map(cpu.lm.namedParameters().filter(([, p]) => p.requiresGrad).map(([n, p]) => [n, p.grad!]));
    const trainable = gpu.lm.namedParameters().filter(([, p]) => p.requiresGrad);
    expect(trainable.length).toBe(6);
    for (const [name, p] of trainable) {
      expect(p.grad!.device).toBe(GPU);
      expect([name, p.grad!.cpu().allclose(gradsCpu.get(name)!, { rtol: 1e-4, atol: 1e-5 })]).toEqual([name, true]);
    }
  });

  test("merged forward on the GPU equals unmerged forward", () => {
    const { lm } = adaptedOnCpu();
    lm.to({ device: GPU });
    const unmerged = lm.forward(ids(GPU));
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
      }
      expect(changedParameters(before, snapshot(model))).toEqual([]);
    });
  }

  test("the merged GPU weight equals W + s·BA computed on the CPU", () => {
    const { model, lm } = adaptedOnCpu();
    const fc1 = model.fc1 as unknown as lora.LoraLinear;
    const [A, B] = fc1.factors("default").map((t) => t.clone());
    const expected = fc1.base_layer.weight.add(B.matmul(A).mul(2));
    lm.to({ device: GPU });
    lm.merge();
    expect(fc1.base_layer.weight.device).toBe(GPU);
    expect(fc1.base_layer.weight.cpu().allclose(expected, { rtol: 1e-5, atol: 1e-5 })).toBe(true);
  });

  test("a model moved back to the CPU computes what it computed on the GPU", () => {
    const { lm } = adaptedOnCpu();
    lm.to({ device: GPU });
    const onGpu = lm.forward(ids(GPU)).cpu();
    lm.to({ device: "cpu" });
    expect(lm.forward(ids("cpu")).allclose(onGpu, { rtol: 1e-4, atol: 1e-5 })).toBe(true);
  });
});

describeCuda("LoRA on cuda:0: async merges and embeddings", () => {
  test("mergeAsync/unmergeAsync on the GPU give the bytes of merge/unmerge", async () => {
    const sync = adaptedOnCpu();
    const async_ = adaptedOnCpu();
    sync.lm.to({ device: GPU });
    async_.lm.to({ device: GPU });
    const before = snapshot(async_.model);
    sync.lm.merge();
    await async_.lm.mergeAsync();
    expect(changedParameters(snapshot(sync.model), snapshot(async_.model))).toEqual([]);
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
