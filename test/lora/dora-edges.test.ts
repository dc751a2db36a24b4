/**
 * DoRA layers outside the PyTorch comparison: an Embedding without a padding index checked
 * against the DoRA formula written with plain tensor ops (forward and gradients, norm detached),
 * and the messages for an input that is not a tensor.
 */
import { Tensor, init, lora, manualSeed, nn, noGrad, randn, tensor } from "../../lib";
import { maxAbsDiff } from "../helpers/stats";

class EmbNet extends nn.Module {
  emb = new nn.Embedding(6, 3);
  fc = new nn.Linear(3, 2);
  override forward(ids: Tensor): Tensor {
    return this.fc.forward(this.emb.forward(ids));
  }
}

function doraEmbNet(): lora.LoraModel<EmbNet> {
  manualSeed(11);
  const lm = lora.injectAdapter(new EmbNet(), { r: 2, loraAlpha: 4, targetModules: ["emb", "fc"], useDora: true });
  noGrad(() => {
    for (const [, layer] of lm.loraLayers()) {
      for (const f of layer.factors("default")) init.normal_(f, 0, 0.5);
      init.uniform_(layer.magnitude("default")!, 0.5, 2);
    }
  });
  return lm;
}

test("a DoRA Embedding without padding index: forward and gradients of A, B and m follow (m/‖W + s·(BA)ᵀ‖) ⊙ (W + s·(BA)ᵀ)[ids]", () => {
  const lm = doraEmbNet();
  const emb = lm.loraLayers().find(([p]) => p === "emb")![1] as lora.LoraEmbedding;
  const [A, B] = emb.factors("default");
  const m = emb.magnitude("default")!;
  const s = emb.settings("default")!.scale;
  // Every id appears, 1 and 0 among them: none may be treated as padding.
  const ids = tensor([0, 1, 2, 3, 4, 5, 1], { dtype: "int64" });
  const G = randn([7, 3]);

  const out = emb.forward(ids);
  out.mul(G).sum().backward();

  // The same formula with plain ops on copies of the parameters.
  const W = emb.base_layer.weight.detach();
  const a = A.detach().clone();
  const b = B.detach().clone();
  const mm = m.detach().clone();
  for (const t of [a, b, mm]) t.requiresGrad = true;
  const combined = W.add(b.matmul(a).t().mul(s)); // (V, d)
  const norm = combined.pow(2).sum(0).sqrt().detach(); // per output feature d
  const expected = combined.indexSelect(0, ids).mul(mm.div(norm));
  expected.mul(G).sum().backward();

  expect(maxAbsDiff(out, expected)).toBeLessThan(1e-5);
  expect(maxAbsDiff(A.grad!, a.grad!)).toBeLessThan(1e-5);
  expect(maxAbsDiff(B.grad!, b.grad!)).toBeLessThan(1e-5);
  expect(maxAbsDiff(m.grad!, mm.grad!)).toBeLessThan(1e-5);
  // Column 1 of A (id 1) gets a gradient: it is no padding index.
  expect(
    a
      .grad!.indexSelect(1, tensor([1], { dtype: "int64" }))
      .abs()
      .sum()
      .item(),
  ).toBeGreaterThan(0);
});

test("a DoRA layer names an input that is not a tensor as the plain layer does", () => {
  const lm = doraEmbNet();
  const emb = lm.loraLayers().find(([p]) => p === "emb")![1] as lora.LoraEmbedding;
  const fc = lm.loraLayers().find(([p]) => p === "fc")![1] as lora.LoraLinear;
  expect(() => fc.forward([1, 2, 3] as unknown as Tensor)).toThrow(new TypeError("input: expected a Tensor, got an array of length 3"));
  expect(() => emb.forward("0 1" as unknown as Tensor)).toThrow(new TypeError('ids: expected a Tensor, got the string "0 1"'));
});
