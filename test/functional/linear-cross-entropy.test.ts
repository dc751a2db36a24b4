/**
 * linearCrossEntropy, the chunked head-and-loss: its loss and the gradients of hidden, weight and
 * bias against PyTorch's F.cross_entropy(F.linear(...)) for every chunking, against the unfused
 * crossEntropy(linear(...)) of this library in fp32 and bf16, and its refusals.
 */
import { Tensor, crossEntropy, linearCrossEntropy, noGrad, tensor } from "../../lib";
import { thrownBy } from "../helpers/errors";
import { itTorch, py } from "../helpers/python";
import { expectClose } from "../helpers/stats";
import { f64, values } from "./values";

const N = 5;
const D = 3;
const V = 7;
const TARGETS = [3, -100, 6, 0, 3];

const int64 = (list: number[]) => tensor(list, { dtype: "int64" });

/** The unfused twin: the logits in full, then cross-entropy in float32 (or float64), through autograd. */
function unfused(h: Tensor, w: Tensor, target: Tensor, bias: Tensor | null, ignoreIndex = -100): Tensor {
  const logits = h.matmul(w.transpose(0, 1));
  const withBias = bias ? logits.add(bias) : logits;
  return crossEntropy(withBias.dtype === "float64" ? withBias : withBias.to("float32"), target, { ignoreIndex });
}

/** Fresh leaves of the float32 case: hidden (n, d), weight (v, d), bias (v), all requiring grad. */
function f32Case(n: number, d: number, v: number, dtype: "float32" | "bfloat16" = "float32") {
  const make = (shape: number[], seed: number, scale: number) =>
    tensor(
      values(
        shape.reduce((a, b) => a * b),
        seed,
      ).map((x) => x * scale),
      { shape, dtype, requiresGrad: true },
    );
  return { h: make([n, d], 11, 1), w: make([v, d], 12, 0.5), b: make([v], 13, 0.1) };
}

describe("linearCrossEntropy", () => {
  for (const chunkRows of [1, 2, N, 64])
    itTorch(`equals F.cross_entropy(F.linear(h, W, b)) and its gradients, ${chunkRows} rows per chunk`, () => {
      const h = f64([N, D], 1, true);
      const w = f64([V, D], 2, true);
      const b = f64([V], 3, true);
      const loss = linearCrossEntropy(h, w, int64(TARGETS), { bias: b, chunkRows });
      loss.backward();
      const ref = py<Record<string, number[] | number>>(
        `
h = torch.tensor(inp["h"], dtype=torch.float64).reshape(5, 3).requires_grad_()
w = torch.tensor(inp["w"], dtype=torch.float64).reshape(7, 3).requires_grad_()
b = torch.tensor(inp["b"], dtype=torch.float64).requires_grad_()
loss = torch.nn.functional.cross_entropy(torch.nn.functional.linear(h, w, b), torch.tensor(inp["t"]), ignore_index=-100)
loss.backward()
out = {"loss": loss.item(), "h": L(h.grad), "w": L(w.grad), "b": L(b.grad)}
`,
        { h: h.toList(), w: w.toList(), b: b.toList(), t: TARGETS },
      );
      expect(loss.dtype).toBe("float64");
      expect(loss.shape).toEqual([]);
      expectClose([loss.item()], [ref.loss as number], 1e-14);
      expectClose(h.grad!.toList(), ref.h as number[], 1e-14);
      expectClose(w.grad!.toList(), ref.w as number[], 1e-14);
      expectClose(b.grad!.toList(), ref.b as number[], 1e-14);
      // the ignored row gets no gradient
      expect(h.grad!.narrow(0, 1, 1).toList()).toEqual([0, 0, 0]);
    });

  it("counts only the targets that are not ignoreIndex, for another ignoreIndex", () => {
    const h = f64([N, D], 4, true);
    const w = f64([V, D], 5);
    const targets = int64([2, 2, 5, 1, 4]);
    const fused = linearCrossEntropy(h, w, targets, { ignoreIndex: 2, chunkRows: 2 });
    fused.backward();
    const fusedGrad = h.grad!.toList();
    h.grad = null;
    const reference = unfused(h, w, targets, null, 2);
    reference.backward();
    expectClose([fused.item()], [reference.item()], 1e-14);
    expectClose(fusedGrad, h.grad!.toList(), 1e-14);
  });

  it("in float32 at a vocabulary of 1000, gives the unfused graph's loss and gradients", () => {
    const { h, w, b } = f32Case(40, 16, 1000);
    const targets = int64(Array.from({ length: 40 }, (_, i) => (i % 9 === 4 ? -100 : (i * 37) % 1000)));
    const fused = linearCrossEntropy(h, w, targets, { bias: b, chunkRows: 16 });
    fused.backward();
    const grads = [h, w, b].map((t) => t.grad!.reshape([-1]).toList() as number[]);
    for (const t of [h, w, b]) t.grad = null;
    const reference = unfused(h, w, targets, b);
    reference.backward();
    expect(fused.dtype).toBe("float32");
    expect(Math.abs(fused.item() - reference.item()) / reference.item()).toBeLessThan(1e-6);
    [h, w, b].forEach((t, i) => expectClose(grads[i], t.grad!.reshape([-1]).toList() as number[], 1e-7));
  });

  it("in bfloat16, multiplies in bf16 and takes the softmax in float32, as the unfused graph does", () => {
    const { h, w } = f32Case(24, 16, 300, "bfloat16");
    const targets = int64(Array.from({ length: 24 }, (_, i) => (i * 53) % 300));
    const fused = linearCrossEntropy(h, w, targets);
    fused.backward();
    const grad = h.grad!.to("float32").reshape([-1]).toList() as number[];
    h.grad = null;
    const reference = unfused(h, w, targets, null);
    reference.backward();
    expect(fused.dtype).toBe("float32");
    expect(Math.abs(fused.item() - reference.item()) / reference.item()).toBeLessThan(1e-3);
    expectClose(grad, h.grad!.to("float32").reshape([-1]).toList() as number[], 2e-4, 1e-2);
  });

  it("scales its gradients by the incoming one, and computes only those that are asked for", () => {
    const h = f64([N, D], 6, true);
    const w = f64([V, D], 7); // frozen, as a pretrained head under LoRA
    linearCrossEntropy(h, w, int64(TARGETS)).mul(3).backward();
    const tripled = h.grad!.toList();
    h.grad = null;
    unfused(h, w, int64(TARGETS), null).backward();
    expectClose(
      tripled,
      h
        .grad!.toList()
        .flat()
        .map((g) => 3 * g),
      1e-14,
    );
    expect(w.grad).toBeNull();
  });

  it("records nothing under noGrad, with the same value", () => {
    const h = f64([N, D], 8, true);
    const w = f64([V, D], 9, true);
    const recorded = linearCrossEntropy(h, w, int64(TARGETS));
    const plain = noGrad(() => linearCrossEntropy(h, w, int64(TARGETS)));
    expect(plain.requiresGrad).toBe(false);
    expect(recorded.requiresGrad).toBe(true);
    expect(plain.item()).toBe(recorded.item());
  });

  it("gives NaN when every target is ignored, as crossEntropy does, and zero gradients", () => {
    const h = f64([2, D], 10, true);
    const loss = linearCrossEntropy(h, f64([V, D], 11), int64([-100, -100]));
    expect(Number.isNaN(loss.item())).toBe(true);
    expect(Number.isNaN(unfused(h, f64([V, D], 11), int64([-100, -100]), null).item())).toBe(true);
    loss.backward();
    expect(h.grad!.toList()).toEqual([0, 0, 0, 0, 0, 0]);
  });

  describe("refuses bad input with a worded error", () => {
    const h = f64([N, D], 1);
    const w = f64([V, D], 2);
    const t = int64(TARGETS);
    it.each<[string, () => unknown, RegExp, new (...a: never[]) => Error]>([
      [
        "hidden of rank 3",
        () => linearCrossEntropy(h.reshape([1, N, D]), w, t),
        /linearCrossEntropy: hidden: expected a floating-point tensor \(N, d\), got float64 of shape \[1, 5, 3\]/,
        TypeError,
      ],
      [
        "integer hidden",
        () => linearCrossEntropy(int64([1, 2]).reshape([1, 2]), w, t),
        /hidden: expected a floating-point tensor \(N, d\), got int64/,
        TypeError,
      ],
      [
        "weight of another width",
        () => linearCrossEntropy(h, f64([V, 4], 2), t),
        /weight: expected shape \(V, 3\) for hidden of shape \[5, 3\], got \[7, 4\]/,
        RangeError,
      ],
      ["bias of another length", () => linearCrossEntropy(h, w, t, { bias: f64([6], 3) }), /bias: expected shape \[7\], got \[6\]/, RangeError],
      [
        "float targets",
        () => linearCrossEntropy(h, w, tensor([1, 2, 3, 4, 5])),
        /target: expected int64 class indices of shape \[5\], got float32 of shape \[5\]/,
        TypeError,
      ],
      [
        "targets of another length",
        () => linearCrossEntropy(h, w, int64([1, 2])),
        /target: expected int64 class indices of shape \[5\], got int64 of shape \[2\]/,
        TypeError,
      ],
      [
        "weight of another dtype",
        () => linearCrossEntropy(h, w.to("float32"), t),
        /linearCrossEntropy: weight has dtype float32 but hidden has float64/,
        TypeError,
      ],
      [
        "a class past the vocabulary",
        () => linearCrossEntropy(h, w, int64([3, 7, 0, 0, 0])),
        /target: class 7 is out of range \[0, 7\) \(and is not ignoreIndex -100\)/,
        RangeError,
      ],
      [
        "a negative class that is not ignoreIndex",
        () => linearCrossEntropy(h, w, int64([3, -1, 0, 0, 0])),
        /target: class -1 is out of range \[0, 7\)/,
        RangeError,
      ],
      ["chunkRows 0", () => linearCrossEntropy(h, w, t, { chunkRows: 0 }), /chunkRows: expected a positive integer, got 0/, RangeError],
      ["chunkRows 1.5", () => linearCrossEntropy(h, w, t, { chunkRows: 1.5 }), /chunkRows: expected a positive integer, got 1.5/, RangeError],
      ["ignoreIndex 0.5", () => linearCrossEntropy(h, w, t, { ignoreIndex: 0.5 }), /ignoreIndex: expected an integer, got 0.5/, TypeError],
      [
        "a bias that is not a tensor",
        () => linearCrossEntropy(h, w, t, { bias: [1] as unknown as Tensor }),
        /linearCrossEntropy: bias: expected a Tensor, got/,
        TypeError,
      ],
    ])("%s", (_name, call, message, kind) => {
      // a refusal from the native side is an Error of the addon's realm: compare by name
      const error = thrownBy(call);
      expect(error.name).toBe(kind.name);
      expect(error.message).toMatch(message);
    });

    it("leaves the inputs' gradients untouched when it refuses", () => {
      const hg = f64([N, D], 1, true);
      expect(() => linearCrossEntropy(hg, w, int64([3, 9, 0, 0, 0]))).toThrow(/out of range/);
      expect(hg.grad).toBeNull();
    });
  });
});
