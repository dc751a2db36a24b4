/**
 * The LoRA kernels pick different code paths by shape and grad mode (a single input row uses
 * matrix-vector products; noGrad skips the autograd node; the embedding adds its low-rank term
 * with one addmm). Each path must give the formula's values and gradients, computed here a
 * second way with plain tensor ops and autograd.
 */
import { Tensor, init, manualSeed, noGrad, randn, tensor } from "../../lib";
import { LoraEmbedding, LoraLinear } from "../../lib/lora/layers";
import { Conv1D, Embedding, Linear } from "../../lib/nn/layers";

const INIT = { initLoraWeights: true, embeddingInit: "a-normal", embeddingInitStd: 1 } as const;

function linearLayer(inF: number, outF: number, conv1d: boolean): LoraLinear {
  const base = conv1d ? new Conv1D(outF, inF) : new Linear(inF, outF);
  base.weight.requiresGrad = false;
  if (base.bias) base.bias.requiresGrad = false;
  const layer = new LoraLinear(base);
  layer.addAdapter("default", { r: 3, alpha: 6, scale: 2, dropout: 0 }, INIT);
  init.normal_(layer.factors("default")[1]); // B nonzero, so the low-rank term counts
  return layer;
}

/** x Wᵀ + b + s·(x Aᵀ) Bᵀ with stock ops, on copies of A and B that record their own gradients. */
function reference(layer: LoraLinear, x: Tensor, conv1d: boolean): { y: Tensor; A: Tensor; B: Tensor } {
  const [A0, B0] = layer.factors("default");
  const A = A0.detach().clone();
  const B = B0.detach().clone();
  A.requiresGrad = true;
  B.requiresGrad = true;
  const w = layer.base_layer.weight;
  const base = x.matmul(conv1d ? w : w.t()).add(layer.base_layer.bias!);
  return { y: base.add(x.matmul(A.t()).matmul(B.t()).mul(2)), A, B };
}

describe("LoRA Linear paths agree with the formula", () => {
  for (const conv1d of [false, true]) {
    for (const shape of [[1, 5], [5], [1, 1, 5], [4, 5], [2, 3, 5]]) {
      test(`${conv1d ? "Conv1D" : "Linear"} input ${JSON.stringify(shape)}: forward, noGrad forward, gradients of A, B and x`, () => {
        manualSeed(7);
        const layer = linearLayer(5, 4, conv1d);
        const x = randn(shape);
        x.requiresGrad = true;
        const y = layer.forward(x);
        const xRef = x.detach().clone();
        xRef.requiresGrad = true;
        const ref = reference(layer, xRef, conv1d);
        expect(y.shape).toEqual([...shape.slice(0, -1), 4]);
        expect(y.allclose(ref.y, { rtol: 1e-5, atol: 1e-6 })).toBe(true);

        const inference = noGrad(() => layer.forward(x.detach()));
        expect(inference.requiresGrad).toBe(false);
        expect(inference.allclose(ref.y.detach(), { rtol: 1e-5, atol: 1e-6 })).toBe(true);

        const g = randn(y.shape);
        y.backward(g);
        ref.y.backward(g);
        const [A, B] = layer.factors("default");
        expect(A.grad!.allclose(ref.A.grad!, { rtol: 1e-4, atol: 1e-5 })).toBe(true);
        expect(B.grad!.allclose(ref.B.grad!, { rtol: 1e-4, atol: 1e-5 })).toBe(true);
        expect(x.grad!.allclose(xRef.grad!, { rtol: 1e-4, atol: 1e-5 })).toBe(true);
      });
    }
  }
});

describe("LoRA Embedding path agrees with the formula", () => {
  for (const ids of [
    [3],
    [0, 2, 2, 5],
    [
      [1, 4],
      [4, 0],
    ],
  ]) {
    test(`ids ${JSON.stringify(ids)}: values and gradients of A and B`, () => {
      manualSeed(3);
      const base = new Embedding(6, 4, { paddingIdx: 0 });
      base.weight.requiresGrad = false;
      const layer = new LoraEmbedding(base);
      layer.addAdapter("default", { r: 2, alpha: 4, scale: 2, dropout: 0 }, INIT);
      const [A, B] = layer.factors("default");
      noGrad(() => init.normal_(B));
      const idx = tensor(ids, { dtype: "int64" });
      const y = layer.forward(idx);

      const Ar = A.detach().clone();
      const Br = B.detach().clone();
      Ar.requiresGrad = true;
      Br.requiresGrad = true;
      // Second path: one-hot rows times the matrices, padding rows of A's gradient masked by hand.
      const flat = Array.isArray(ids[0]) ? (ids as number[][]).flat() : (ids as number[]);
      const oneHot = tensor(flat.map((i) => Array.from({ length: 6 }, (_, j) => (i === j ? 1 : 0))));
      const mask = tensor(flat.map((i) => (i === 0 ? 0 : 1))).reshape([flat.length, 1]);
      const after = oneHot.matmul(Ar.t());
      const lookup = after.mul(mask).add(after.detach().mul(mask.neg().add(1)));
      const ref = oneHot.matmul(base.weight).add(lookup.matmul(Br.t()).mul(2));
      expect(y.reshape([flat.length, 4]).allclose(ref, { rtol: 1e-5, atol: 1e-6 })).toBe(true);
      expect(y.shape).toEqual([...(Array.isArray(ids[0]) ? [2, 2] : [flat.length]), 4]);

      const g = randn([flat.length, 4]);
      y.backward(g.reshape(y.shape));
      ref.backward(g);
      expect(A.grad!.allclose(Ar.grad!, { rtol: 1e-4, atol: 1e-5 })).toBe(true);
      expect(B.grad!.allclose(Br.grad!, { rtol: 1e-4, atol: 1e-5 })).toBe(true);
    });
  }
});
