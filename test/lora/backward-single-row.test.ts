/**
 * The single-row backward of the LoRA Linear node (one token: matrix-vector and outer products,
 * only the tensors backward reads saved, no multiply when the scale is 1) against finite
 * differences in float64 and against the same layer's gradients on a batch of rows, which take
 * the matrix path: for x, A and B, with a frozen or a trainable base, Linear and Conv1D.
 */
import { Tensor, init, manualSeed, noGrad, tensor } from "../../lib";
import { LoraLinear } from "../../lib/lora/layers";
import { Conv1D, Linear } from "../../lib/nn/layers";
import { expectGradientMatchesFiniteDifferences, pseudoRandom } from "../helpers/gradcheck";

const INIT = { initLoraWeights: true, embeddingInit: "a-normal", embeddingInitStd: 1 } as const;

function layer(conv1d: boolean, scale: number, trainableBase: boolean): LoraLinear {
  manualSeed(11);
  const base = conv1d ? new Conv1D(4, 6, { dtype: "float64" }) : new Linear(6, 4, { dtype: "float64" });
  base.weight.requiresGrad = trainableBase;
  base.bias!.requiresGrad = trainableBase;
  const l = new LoraLinear(base);
  l.addAdapter("default", { r: 3, alpha: 3 * scale, scale, dropout: 0 }, INIT);
  init.normal_(l.factors("default")[1]); // B nonzero, so the low-rank term counts
  return l;
}

/** The gradients of sum(forward(x) · w) for x, A, B (and the base's weight and bias when trainable). */
function gradients(l: LoraLinear, x: Tensor, w: Tensor): Tensor[] {
  const xx = x.detach().clone();
  xx.requiresGrad = true;
  const params = [...l.factors("default"), ...(l.base_layer.weight.requiresGrad ? [l.base_layer.weight, l.base_layer.bias!] : [])];
  for (const p of params) p.grad = null;
  l.forward(xx).mul(w).sum().backward();
  return [xx.grad!, ...params.map((p) => p.grad!.clone())];
}

describe.each([
  ["Linear", false],
  ["Conv1D", true],
])("%s, one input row", (_name, conv1d) => {
  for (const scale of [1, 2.5]) {
    for (const trainableBase of [false, true]) {
      it(`scale ${scale}${trainableBase ? ", trainable base" : ""}: gradients equal those of the same row in a batch, and finite differences`, () => {
        const l = layer(conv1d, scale, trainableBase);
        const rows = tensor(pseudoRandom(3 * 6, 5), { shape: [3, 6], dtype: "float64" });
        const w = tensor(pseudoRandom(3 * 4, 6), { shape: [3, 4], dtype: "float64" });
        // Row 1 alone (single-row path) against the batch with the other rows' weights zeroed (matrix path).
        const wOne = noGrad(() => w.mul(tensor([[0], [1], [0]], { dtype: "float64" })));
        const single = gradients(l, rows.narrow(0, 1, 1), w.narrow(0, 1, 1));
        const batch = gradients(l, rows, wOne);
        expect(single[0].allclose(batch[0].narrow(0, 1, 1), { rtol: 1e-10, atol: 1e-12 })).toBe(true);
        for (let i = 1; i < single.length; i++) expect(single[i].allclose(batch[i], { rtol: 1e-10, atol: 1e-12 })).toBe(true);
        expectGradientMatchesFiniteDifferences((x) => l.forward(x), pseudoRandom(6, 8), [1, 6]);
        expectGradientMatchesFiniteDifferences((x) => l.forward(x), pseudoRandom(6, 9), [1, 1, 6]);
      });
    }
  }

  it("only the factors train: no input gradient, the factors' gradients still right", () => {
    const l = layer(conv1d, 2, false);
    const x = tensor(pseudoRandom(6, 3), { shape: [1, 6], dtype: "float64" });
    const w = tensor(pseudoRandom(4, 4), { shape: [1, 4], dtype: "float64" });
    l.forward(x).mul(w).sum().backward();
    expect(x.grad).toBeNull();
    const [A, B] = l.factors("default");
    // d/dA of sum(w · s·(x Aᵀ) Bᵀ) = s·(Bᵀ wᵀ) x; d/dB = s·wᵀ (x Aᵀ).
    const gA = noGrad(() => B.t().matmul(w.t()).matmul(x).mul(2));
    const gB = noGrad(() => w.t().matmul(x.matmul(A.t())).mul(2));
    expect(A.grad!.allclose(gA, { rtol: 1e-10, atol: 1e-12 })).toBe(true);
    expect(B.grad!.allclose(gB, { rtol: 1e-10, atol: 1e-12 })).toBe(true);
  });
});
