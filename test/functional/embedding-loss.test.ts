/**
 * embedding (F.embedding) and crossEntropy's ignoreIndex and labelSmoothing against PyTorch,
 * values and gradients, for (N, C) and (N, C, d) inputs and every reduction.
 */
import { Tensor, crossEntropy, embedding, tensor } from "../../lib";
import { itTorch, py } from "../helpers/python";
import { expectClose } from "../helpers/stats";
import { f64 } from "./values";

describe("embedding", () => {
  itTorch("equals F.embedding with padding_idx: rows, and no gradient into the padding row", () => {
    const w = f64([6, 3], 1, true);
    const ids = tensor(
      [
        [0, 5, 2],
        [5, 5, 1],
      ],
      { dtype: "int64" },
    );
    const y = embedding(ids, w, { paddingIdx: -1 });
    const g = f64([2, 3, 3], 2);
    y.backward(g);
    const ref = py<Record<string, number[]>>(
      `
w = torch.tensor(inp["w"]).reshape(6, 3).requires_grad_()
y = torch.nn.functional.embedding(torch.tensor(inp["ids"]), w, padding_idx=-1)
y.backward(torch.tensor(inp["g"]).reshape(2, 3, 3))
out = {"y": L(y), "w": L(w.grad)}
`,
      {
        w: w.toList(),
        ids: [
          [0, 5, 2],
          [5, 5, 1],
        ],
        g: g.toList(),
      },
    );
    expect(y.shape).toEqual([2, 3, 3]);
    expectClose(y.toList(), ref.y, 0);
    expectClose(w.grad!.toList(), ref.w, 1e-15);
    expect(w.grad!.narrow(0, 5, 1).toList()).toEqual([0, 0, 0]);
  });

  it.each([
    [
      "paddingIdx out of range",
      () => embedding(tensor([0], { dtype: "int64" }), f64([4, 2], 1), { paddingIdx: 4 }),
      /embedding: paddingIdx: expected an integer in \[-4, 3\], got 4/,
    ],
    ["id out of range", () => embedding(tensor([7], { dtype: "int64" }), f64([4, 2], 1)), /embedding: ids: .*7/],
    ["weight not a tensor", () => embedding(tensor([0], { dtype: "int64" }), null as unknown as Tensor), /embedding: weight: expected a Tensor, got null/],
  ])("bad input: %s", (_n, call, message) => {
    expect(call).toThrow(message);
  });
});

describe("crossEntropy with ignoreIndex and labelSmoothing equals PyTorch's", () => {
  const cases: {
    name: string;
    shape: number[];
    target: number[];
    tshape: number[];
    reduction: "mean" | "sum" | "none";
    ignoreIndex?: number;
    labelSmoothing?: number;
  }[] = [
    {
      name: "(N, C), mean, smoothing 0.1, default ignoreIndex -100",
      shape: [5, 4],
      target: [3, -100, 0, 1, 3],
      tshape: [5],
      reduction: "mean",
      labelSmoothing: 0.1,
    },
    { name: "(N, C), sum, ignoreIndex 2", shape: [4, 3], target: [2, 1, 2, 0], tshape: [4], reduction: "sum", ignoreIndex: 2 },
    {
      name: "(N, C, d), none, ignoreIndex 0, smoothing 0.3",
      shape: [2, 3, 4],
      target: [0, 1, 2, 1, 2, 0, 0, 1],
      tshape: [2, 4],
      reduction: "none",
      ignoreIndex: 0,
      labelSmoothing: 0.3,
    },
    {
      name: "(N, C, d1, d2), mean, smoothing 0.2",
      shape: [2, 3, 2, 2],
      target: [0, 1, 2, 1, -100, 0, 2, 2],
      tshape: [2, 2, 2],
      reduction: "mean",
      labelSmoothing: 0.2,
    },
  ];
  for (const c of cases) {
    itTorch(c.name, () => {
      const leaf = f64(c.shape, 21, true);
      const target = tensor(c.target, { shape: c.tshape, dtype: "int64" });
      const loss = crossEntropy(leaf.mul(3), target, { reduction: c.reduction, ignoreIndex: c.ignoreIndex, labelSmoothing: c.labelSmoothing });
      loss.sum().backward();
      const ref = py<Record<string, number[]>>(
        `
x = torch.tensor(inp["x"]).reshape(inp["shape"]).requires_grad_()
loss = torch.nn.functional.cross_entropy(x * 3, torch.tensor(inp["t"]).reshape(inp["tshape"]), reduction=inp["r"],
                                         ignore_index=inp["ii"], label_smoothing=inp["ls"])
loss.sum().backward()
out = {"loss": L(loss), "grad": L(x.grad)}
`,
        { x: leaf.toList(), shape: c.shape, t: c.target, tshape: c.tshape, r: c.reduction, ii: c.ignoreIndex ?? -100, ls: c.labelSmoothing ?? 0 },
      );
      expectClose(loss.toList(), ref.loss, 1e-12);
      expectClose(leaf.grad!.toList(), ref.grad, 1e-12);
    });
  }
});
