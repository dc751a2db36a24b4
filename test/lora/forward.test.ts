import { Tensor, init, lora, manualSeed, noGrad, nn, randn, tensor } from "../../lib";
import type { Dtype } from "../../lib";
import { TinyModel, snapshot, changedParameters } from "../helpers/models";

const ids = () =>
  tensor(
    [
      [1, 2, 0, 3],
      [4, 0, 5, 1],
    ],
    { dtype: "int64" },
  );

describe("step 0: the adapter is an exact no-op", () => {
  for (const dtype of ["float32", "float16", "bfloat16"] as Dtype[]) {
    for (const embeddingInit of ["a-normal", "b-normal"] as const) {
      test(`${dtype}, embedding ${embeddingInit}`, () => {
        manualSeed(1);
        const model = new TinyModel({ dtype, paddingIdx: 0, activation: dtype !== "float16" });
        const before = model.forward(ids());
        const lm = lora.injectAdapter(model, { r: 4, loraAlpha: 16, targetModules: ["emb", "fc1", "head"], embeddingInit });
        const after = lm.forward(ids());
        expect(after.dtype).toBe(dtype);
        expect(after.equal(before)).toBe(true);
        // The adapter really is in the path: a nonzero B changes the output.
        for (const [, layer] of lm.loraLayers())
          init.normal_(layer.factors("default")[embeddingInit === "b-normal" && layer instanceof lora.LoraEmbedding ? 0 : 1]);
        expect((lm.forward(ids()) as Tensor).equal(before)).toBe(false);
      });
    }
  }
});

describe("forward equals the formula computed independently", () => {
  test.each([
    ["plain", false],
    ["rsLoRA", true],
  ])("Linear, %s scaling", (_label, useRslora) => {
    manualSeed(2);
    const model = new nn.Sequential(new nn.Linear(6, 5));
    const base = model.at(0) as nn.Linear;
    const W = base.weight.detach().clone();
    const b = base.bias!.detach().clone();
    const lm = lora.injectAdapter(model, { r: 4, loraAlpha: 12, targetModules: ["0"], useRslora });
    const layer = model.at(0) as lora.LoraLinear;
    const [A, B] = layer.factors("default");
    init.normal_(B);
    const s = useRslora ? 12 / Math.sqrt(4) : 12 / 4;
    const x = randn([3, 2, 6]);
    const expected = x.matmul(W.t()).add(b).add(x.matmul(A.t()).matmul(B.t()).mul(s));
    expect((lm.forward(x) as Tensor).allclose(expected, { rtol: 1e-5, atol: 1e-6 })).toBe(true);
  });

  test("Embedding with padding_idx: rows are W[id] + s·A[:, id]ᵀ Bᵀ", () => {
    manualSeed(3);
    const emb = new nn.Embedding(7, 3, { paddingIdx: 2 });
    const model = new nn.Sequential(emb);
    const lm = lora.injectAdapter(model, { r: 2, loraAlpha: 4, targetModules: ["0"] });
    const layer = model.at(0) as lora.LoraEmbedding;
    const [A, B] = layer.factors("default");
    init.normal_(B);
    const Wv = emb.weight.toList();
    const Av = A.toList();
    const Bv = B.toList();
    const idList = [0, 2, 6, 2, 3];
    const out = (lm.forward(tensor(idList, { dtype: "int64" })) as Tensor).toList();
    // Hand computation in plain JS numbers.
    idList.forEach((id, row) => {
      for (let j = 0; j < 3; j++) {
        let low = 0;
        for (let k = 0; k < 2; k++) low += Av[k * 7 + id] * Bv[j * 2 + k];
        const want = Wv[id * 3 + j] + 2 * low;
        expect(out[row * 3 + j]).toBeCloseTo(want, 5);
      }
    });
    // The padding column of A starts at zero, so the padding row equals the base row.
    for (let k = 0; k < 2; k++) expect(Av[k * 7 + 2]).toBe(0);
  });

  test("Conv1D (fanInFanOut): y = x W + b + s·(x Aᵀ) Bᵀ", () => {
    manualSeed(4);
    const conv = new nn.Conv1D(5, 6);
    const W = conv.weight.detach().clone();
    const model = new nn.Sequential(conv);
    const lm = lora.injectAdapter(model, { r: 3, loraAlpha: 3, targetModules: ["0"] });
    const [A, B] = (model.at(0) as lora.LoraLinear).factors("default");
    init.normal_(B);
    const x = randn([4, 6]);
    const expected = x.matmul(W).add(conv.bias).add(x.matmul(A.t()).matmul(B.t()));
    expect((lm.forward(x) as Tensor).allclose(expected, { rtol: 1e-5, atol: 1e-6 })).toBe(true);
  });
});

describe("backward", () => {
  test("gradients reach A and B only, and equal those of the composite formula (float64)", () => {
    manualSeed(5);
    const linear = new nn.Linear(5, 4, { dtype: "float64" });
    const model = new nn.Sequential(linear);
    const lm = lora.injectAdapter(model, { r: 3, loraAlpha: 6, targetModules: ["0"] });
    const [A, B] = (model.at(0) as lora.LoraLinear).factors("default");
    init.normal_(B);
    const x = randn([2, 3, 5], { dtype: "float64", requiresGrad: true });
    const g = randn([2, 3, 4], { dtype: "float64" });
    (lm.forward(x) as Tensor).mul(g).sum().backward();
    expect(linear.weight.grad).toBeNull();
    expect(linear.bias!.grad).toBeNull();
    const fused = [A.grad!, B.grad!, x.grad!].map((t) => t.clone());
    A.grad = null;
    B.grad = null;
    x.grad = null;
    x.matmul(linear.weight.t()).add(linear.bias!).add(x.matmul(A.t()).matmul(B.t()).mul(2)).mul(g).sum().backward();
    [A.grad!, B.grad!, x.grad!].forEach((t, i) => expect(fused[i].allclose(t, { rtol: 1e-12, atol: 1e-12 })).toBe(true));
  });

  test("dropout: gradients still match the composite path with the same mask (train mode, p = 0.5)", () => {
    manualSeed(6);
    const model = new nn.Sequential(new nn.Linear(8, 8, { dtype: "float64" }));
    const lm = lora.injectAdapter(model, { r: 2, loraAlpha: 2, loraDropout: 0.5, targetModules: ["0"] });
    const layer = model.at(0) as lora.LoraLinear;
    const [A, B] = layer.factors("default");
    init.normal_(B);
    const W = layer.base_layer.weight;
    const bias = (layer.base_layer as nn.Linear).bias!;
    const x = randn([4, 8], { dtype: "float64", requiresGrad: true });
    const g = randn([4, 8], { dtype: "float64" });
    // Eval mode: dropout off, so the output is deterministic and equals the formula.
    lm.eval();
    const evalOut = lm.forward(x) as Tensor;
    expect(evalOut.allclose(x.matmul(W.t()).add(bias).add(x.matmul(A.t()).matmul(B.t())), { rtol: 1e-12 })).toBe(true);
    // Train mode: the fused node draws its dropout mask first, so the same seed gives the same
    // mask to x.dropout(), and the composite path below sees exactly the fused node's mask.
    lm.train();
    manualSeed(60);
    const fusedOut = lm.forward(x) as Tensor;
    fusedOut.mul(g).sum().backward();
    const fused = [A.grad!, B.grad!, x.grad!].map((t) => t.clone());
    [A, B, x].forEach((t) => (t.grad = null));
    manualSeed(60);
    const dropped = x.dropout(0.5);
    const zeroed = dropped.eq(0).sum().item();
    expect(zeroed).toBeGreaterThan(0); // a real mask: some inputs dropped ...
    expect(zeroed).toBeLessThan(32); // ... and some kept
    const composite = x.matmul(W.t()).add(bias).add(dropped.matmul(A.t()).matmul(B.t()));
    expect(fusedOut.allclose(composite, { rtol: 1e-12, atol: 1e-12 })).toBe(true);
    expect(fusedOut.allclose(evalOut)).toBe(false);
    composite.mul(g).sum().backward();
    const names = ["A", "B", "x"];
    [A.grad!, B.grad!, x.grad!].forEach((t, i) => expect([names[i], fused[i].allclose(t, { rtol: 1e-12, atol: 1e-12 })]).toEqual([names[i], true]));
    // The mask matters to the gradients: those of the unmasked path differ.
    [A, B].forEach((t) => (t.grad = null));
    x.matmul(W.t()).add(bias).add(x.matmul(A.t()).matmul(B.t())).mul(g).sum().backward();
    expect(fused[0].allclose(A.grad!, { rtol: 1e-6 })).toBe(false);
  });

  test("padding token's output stays the base output through training, in both init modes", () => {
    for (const embeddingInit of ["a-normal", "b-normal"] as const) {
      manualSeed(7);
      const model = new TinyModel({ paddingIdx: 0 });
      const padIds = tensor([0], { dtype: "int64" });
      const basePad = model.emb.forward(padIds);
      const lm = lora.injectAdapter(model, { r: 4, loraAlpha: 8, targetModules: ["emb", "fc1"], embeddingInit });
      const target = tensor([3, 4, 5, 6, 7, 8, 9, 10], { dtype: "int64" });
      const batch = tensor([0, 1, 2, 0, 3, 4, 0, 5], { dtype: "int64" });
      const before = snapshot(model);
      for (let step = 0; step < 5; step++) {
        const logits = lm.forward(batch);
        const loss = require("../../lib").crossEntropy(logits, target) as Tensor;
        loss.backward();
        noGrad(() => {
          for (const p of lm.trainableParameters()) {
            nn.copyInto(p, p.sub(p.grad!.mul(0.5)));
            p.grad = null;
          }
        });
      }
      const emb = model.emb as unknown as lora.LoraEmbedding;
      expect(emb.forward(padIds).equal(basePad)).toBe(true);
      // Training did move the adapters, and only them.
      const changed = changedParameters(before, snapshot(model));
      expect(changed.length).toBeGreaterThan(0);
      expect(changed.every((n) => n.includes("lora_"))).toBe(true);
    }
  });
});
