/**
 * layerNorm and rmsNorm against PyTorch (F.layer_norm; rmsNorm as Llama's RMSNorm written out),
 * values and gradients, against central finite differences, in half precision, and their errors.
 */
import { Tensor, layerNorm, noGrad, rmsNorm, tensor } from "../../lib";
import { itTorch, py } from "../helpers/python";
import { expectClose } from "../helpers/stats";
import { f64, numericGrad, values } from "./values";

const T = `
def T(name, shape, grad=False):
    return torch.tensor(inp[name], dtype=torch.float64).reshape(shape).requires_grad_(grad)
`;

describe("layerNorm", () => {
  itTorch("equals F.layer_norm over two trailing dims, with weight and bias, values and gradients", () => {
    const x = f64([3, 2, 4], 1, true),
      w = f64([2, 4], 2, true),
      b = f64([2, 4], 3, true),
      g = f64([3, 2, 4], 4);
    const y = layerNorm(x, [2, 4], { weight: w, bias: b, eps: 1e-3 });
    y.backward(g);
    const ref = py<Record<string, number[]>>(
      T +
        `
x, w, b = T("x", [3, 2, 4], True), T("w", [2, 4], True), T("b", [2, 4], True)
y = torch.nn.functional.layer_norm(x, [2, 4], w, b, 1e-3)
y.backward(T("g", [3, 2, 4]))
out = {"y": L(y), "x": L(x.grad), "w": L(w.grad), "b": L(b.grad)}
`,
      { x: x.toList(), w: w.toList(), b: b.toList(), g: g.toList() },
    );
    expectClose(y.toList(), ref.y, 1e-12);
    expectClose(x.grad!.toList(), ref.x, 1e-12);
    expectClose(w.grad!.toList(), ref.w, 1e-12);
    expectClose(b.grad!.toList(), ref.b, 1e-12);
  });

  it("gradient with respect to x equals central finite differences (float64), no affine", () => {
    const X = values(12, 5),
      G = values(12, 6);
    const loss = (v: number[]) =>
      noGrad(() =>
        layerNorm(tensor(v, { shape: [3, 4], dtype: "float64" }), 4)
          .mul(tensor(G, { shape: [3, 4], dtype: "float64" }))
          .sum()
          .item(),
      );
    const x = tensor(X, { shape: [3, 4], dtype: "float64", requiresGrad: true });
    layerNorm(x, 4).backward(tensor(G, { shape: [3, 4], dtype: "float64" }));
    expectClose(x.grad!.toList(), numericGrad(loss, X), 1e-8);
  });

  it("normalizes each row to mean 0 and variance 1 (a hand-checked case)", () => {
    // Row [1, 2, 3, 4]: mean 2.5, biased variance 1.25.
    const y = layerNorm(tensor([1, 2, 3, 4], { dtype: "float64" }), [4], { eps: 0 }).toList();
    expectClose(
      y,
      [-1.5, -0.5, 0.5, 1.5].map((d) => d / Math.sqrt(1.25)),
      1e-12,
    );
  });

  it("float16 input gives float16 output close to the float32 result", () => {
    const x = f64([4, 8], 7).mul(3);
    const y16 = layerNorm(x.to("float16"), 8);
    expect(y16.dtype).toBe("float16");
    expectClose(y16.to("float32").toList(), layerNorm(x.to("float16").to("float32"), 8).toList(), 4e-3);
  });

  it.each([
    ["trailing dims", () => layerNorm(f64([3, 4], 1), [3]), /layerNorm: input: expected trailing dims \[3\] \(normalizedShape\), got shape \[3, 4\]/],
    ["weight shape", () => layerNorm(f64([3, 4], 1), 4, { weight: f64([3], 2) }), /layerNorm: weight: expected shape \[4\] \(normalizedShape\), got \[3\]/],
    ["normalizedShape type", () => layerNorm(f64([3, 4], 1), [] as number[]), /layerNorm: normalizedShape: expected a positive integer/],
    ["integer input", () => layerNorm(tensor([1, 2], { dtype: "int64" }), 2), /layerNorm: input: expected a floating-point tensor, got dtype int64/],
    ["eps", () => layerNorm(f64([3, 4], 1), 4, { eps: -1 }), /layerNorm: eps: expected a finite number >= 0, got -1/],
    [
      "rmsNorm integer input",
      () => rmsNorm(tensor([1, 2], { dtype: "int64" }), 2, { eps: 1e-6 }),
      /rmsNorm: input: expected a floating-point tensor, got dtype int64/,
    ],
    [
      "rmsNorm integer weight",
      () => rmsNorm(f64([3, 4], 1), 4, { weight: tensor([1, 1, 1, 1], { dtype: "int64" }) }),
      /rmsNorm: weight: expected a floating-point tensor, got dtype int64/,
    ],
  ])("bad input: %s", (_n, call, message) => {
    expect(call).toThrow(message);
  });
});

const RMS = `
def rms(x, w, eps):
    h = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return w * h.to(x.dtype)
`;

describe("rmsNorm", () => {
  itTorch("equals Llama's RMSNorm written in PyTorch, values and gradients (float64)", () => {
    const x = f64([2, 3, 6], 11, true),
      w = f64([6], 12, true),
      g = f64([2, 3, 6], 13);
    const y = rmsNorm(x, 6, { weight: w, eps: 1e-6 });
    y.backward(g);
    const ref = py<Record<string, number[]>>(
      T +
        RMS +
        `
x, w = T("x", [2, 3, 6], True), T("w", [6], True)
y = rms(x, w, 1e-6)
y.backward(T("g", [2, 3, 6]))
out = {"y": L(y), "x": L(x.grad), "w": L(w.grad)}
`,
      { x: x.toList(), w: w.toList(), g: g.toList() },
    );
    expectClose(y.toList(), ref.y, 1e-12);
    expectClose(x.grad!.toList(), ref.x, 1e-12);
    expectClose(w.grad!.toList(), ref.w, 1e-12);
  });

  itTorch("bfloat16: normalized in float32, rounded, then multiplied by the bfloat16 weight, bit for bit as Llama", () => {
    const x = f64([4, 16], 14).mul(5).to("bfloat16"),
      w = f64([16], 15).to("bfloat16");
    const y = rmsNorm(x, 16, { weight: w, eps: 1e-5 });
    expect(y.dtype).toBe("bfloat16");
    const ref = py<number[]>(RMS + `out = L(rms(torch.tensor(inp["x"]).reshape(4, 16).bfloat16(), torch.tensor(inp["w"]).bfloat16(), 1e-5))`, {
      x: x.to("float64").toList(),
      w: w.to("float64").toList(),
    });
    expect(y.to("float64").toList()).toEqual(ref);
  });

  it("gradient with respect to x equals central finite differences, over two dims", () => {
    const X = values(24, 16),
      G = values(24, 17),
      W = values(12, 18);
    const w = () => tensor(W, { shape: [3, 4], dtype: "float64" });
    const loss = (v: number[]) =>
      noGrad(() =>
        rmsNorm(tensor(v, { shape: [2, 3, 4], dtype: "float64" }), [3, 4], { weight: w(), eps: 1e-4 })
          .mul(tensor(G, { shape: [2, 3, 4], dtype: "float64" }))
          .sum()
          .item(),
      );
    const x = tensor(X, { shape: [2, 3, 4], dtype: "float64", requiresGrad: true });
    rmsNorm(x, [3, 4], { weight: w(), eps: 1e-4 }).backward(tensor(G, { shape: [2, 3, 4], dtype: "float64" }));
    expectClose(x.grad!.toList(), numericGrad(loss, X), 1e-8);
  });

  it("float16: values and gradients close to the float32 computation", () => {
    const x32 = f64([4, 8], 19).mul(2).to("float32"),
      w32 = f64([8], 20).to("float32");
    const x16 = x32.to("float16").detach(),
      w16 = w32.to("float16").detach();
    x16.requiresGrad = true;
    w16.requiresGrad = true;
    const xw = x16.to("float32").detach(),
      ww = w16.to("float32").detach();
    xw.requiresGrad = true;
    ww.requiresGrad = true;
    const y16 = rmsNorm(x16, 8, { weight: w16, eps: 1e-5 });
    const y32 = rmsNorm(xw, 8, { weight: ww, eps: 1e-5 });
    expect(y16.dtype).toBe("float16");
    expectClose(y16.to("float32").toList(), y32.toList(), 1e-2);
    const g = f64([4, 8], 21).to("float32");
    y16.backward(g.to("float16"));
    y32.backward(g);
    expect(x16.grad!.dtype).toBe("float16");
    expectClose(x16.grad!.to("float32").toList(), xw.grad!.toList(), 2e-2);
    expectClose(w16.grad!.to("float32").toList(), ww.grad!.toList(), 2e-2);
  });

  it("default eps is the dtype's machine epsilon (torch.finfo(dtype).eps)", () => {
    // All-zero rows: the output is 0 · rsqrt(eps) = 0 either way; a tiny row shows eps.
    const tiny = tensor([1e-4, -1e-4], { dtype: "float32" });
    const expected = 1e-4 / Math.sqrt(1e-8 + 2 ** -23);
    expectClose(rmsNorm(tiny, 2).toList(), [expected, -expected], 1e-4);
  });

  it.each([
    ["weight shape", () => rmsNorm(f64([3, 4], 1), 4, { weight: f64([4, 1], 2) }), /rmsNorm: weight: expected shape \[4\] \(normalizedShape\), got \[4, 1\]/],
    ["trailing dims", () => rmsNorm(f64([3, 4], 1), [5]), /rmsNorm: input: expected trailing dims \[5\]/],
    ["input type", () => rmsNorm([1, 2] as unknown as Tensor, 2), /rmsNorm: input: expected a Tensor, got an array/],
  ])("bad input: %s", (_n, call, message) => {
    expect(call).toThrow(message);
  });
});
