/**
 * The facade owns semantic checks (see docs/native-boundary.md): a value that makes no sense but
 * reads nothing out of bounds is refused in lib/, and a direct native call that skips the facade
 * gets libtorch's own error (or a meaningless but harmless result), never a crash. Each row calls
 * the addon directly with a value the facade would refuse first.
 */
import { native } from "../../lib/binding";
import { handleOf } from "../../lib/tensor";
import { tensor, zeros } from "../../lib";
import { thrownBy } from "../helpers/errors";

const h = handleOf;
const ids = (v: number[]) => tensor(v, { dtype: "int64" });
const create = { dtype: "float32", device: "cpu", requiresGrad: false };

const REFUSED: [name: string, call: () => unknown, libtorchSays: RegExp][] = [
  [
    "labelSmoothing 2",
    () => native.crossEntropy({ input: h(zeros([2, 3])), target: h(ids([0, 1])), reduction: "mean", ignoreIndex: -100, labelSmoothing: 2 }),
    /label_smoothing/,
  ],
  [
    "float class targets",
    () => native.crossEntropy({ input: h(zeros([2, 3])), target: h(tensor([0, 1])), reduction: "mean", ignoreIndex: -100, labelSmoothing: 0 }),
    /Long/,
  ],
  ["allclose rtol -1", () => native.allclose(h(zeros([1])), h(zeros([1])), { rtol: -1, atol: 0 }), /rtol/],
  ["arange step 0", () => native.arange({ start: 0, end: 3, step: 0, ...create }), /step must be nonzero/],
  ["zeros with a negative dim", () => native.factory({ kind: "zeros", shape: [-1, 2], ...create }), /negative dimension/],
  ["dropout p 2", () => native.dropout(h(zeros([3])), 2, true), /dropout probability/],
  ["item() of three elements", () => native.item(h(zeros([3]))), /3 elements/],
  ["matmul float32 x float64", () => native.matmul(h(zeros([2, 2])), h(zeros([2, 2], { dtype: "float64" }))), /scalar type|dtype/],
  ["normal_ std -1", () => native.initNormal(h(zeros([3])), 0, -1), /std/],
  ["uniform_ a > b", () => native.initUniform(h(zeros([3])), 2, 1), /from=2 > to=1/],
  ["normal_ on int64", () => native.initNormal(h(zeros([3], { dtype: "int64" })), 0, 1), /not implemented for 'Long'/],
  ["kaiming on a vector", () => native.initKaimingUniform(h(zeros([3])), { a: 0, mode: "fan_in", nonlinearity: "leaky_relu" }), /2 dimensions|dimensions/],
  ["kaiming a NaN", () => native.initKaimingNormal(h(zeros([2, 2])), { a: NaN, mode: "fan_in", nonlinearity: "leaky_relu" }), /std/],
  ["SiLU on int64", () => native.siluActivation(h(zeros([3], { dtype: "int64" }))), /not implemented for 'Long'/],
  ["split size 0", () => native.split(h(zeros([3])), 0, 0), /split_size can only be 0/],
  ["split size -1", () => native.split(h(zeros([3])), -1, 0), /non-negative/],
  ["chunk count 0", () => native.chunk(h(zeros([3])), 0, 0), /greater than 0/],
  ["slice step 0", () => native.slice(h(zeros([3])), { dim: 0, start: null, end: null, step: 0 }), /slice step must be positive/],
  ["cat of nothing", () => native.cat([], 0), /non-empty/],
  ["stack of nothing", () => native.stack([], 0), /non-empty/],
  ["linear float64 input, float32 weight", () => native.linear(h(zeros([1, 4], { dtype: "float64" })), h(zeros([2, 4])), null), /scalar type|dtype/],
  ["linear float16 input, float32 weight", () => native.linear(h(zeros([1, 4], { dtype: "float16" })), h(zeros([2, 4])), null), /scalar type|dtype|Half/],
  ["rmsNorm of int64", () => native.rmsNorm({ input: h(zeros([2, 4], { dtype: "int64" })), normalizedShape: [4], weight: null, eps: 1e-6 }), /Long|dtype/],
  ["add_ on a leaf that requires grad", () => native.add_(h(tensor([1, 2], { requiresGrad: true })), 1, 1), /leaf Variable that requires grad/],
  ["zero_ on a leaf that requires grad", () => native.zero_(h(tensor([1, 2], { requiresGrad: true }))), /leaf Variable that requires grad/],
];

describe("a direct native call with a semantic bad value gets libtorch's error, not a crash", () => {
  it.each(REFUSED.map((r) => [r[0], r] as const))("%s", (_name, [, call, libtorchSays]) => {
    expect(thrownBy(call).message).toMatch(libtorchSays);
  });

  it("a NaN labelSmoothing, which ATen lets through, is read as no smoothing: harmless, though meaningless", () => {
    const loss = native.crossEntropy({ input: h(zeros([2, 3])), target: h(ids([0, 1])), reduction: "mean", ignoreIndex: -100, labelSmoothing: NaN });
    // Uniform logits over 3 classes: the unsmoothed loss is ln 3.
    expect(native.item(loss)).toBeCloseTo(Math.log(3), 6);
  });

  it("mseLoss of unequal shapes broadcasts there, as ATen does (the facade refuses it)", () => {
    const loss = native.mseLoss(h(tensor([[1, 2, 3]])), h(tensor([1, 2, 4])), "sum");
    expect(native.item(loss)).toBe(1);
  });
});
