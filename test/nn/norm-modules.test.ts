/** nn.LayerNorm, nn.RMSNorm, nn.SiLU and nn.Identity against their PyTorch counterparts. */
import { Tensor, nn, tensor } from "../../lib";
import { itTorch, py } from "../helpers/python";
import { expectClose } from "../helpers/stats";
import { f64 } from "../functional/values";

describe("nn.LayerNorm", () => {
  itTorch("has PyTorch's init and keys, loads a PyTorch state dict and then computes what PyTorch computes", () => {
    const ln = new nn.LayerNorm(6, { eps: 1e-6, dtype: "float64" });
    expect(Object.keys(ln.stateDict())).toEqual(["weight", "bias"]);
    expect(ln.weight!.toList()).toEqual([1, 1, 1, 1, 1, 1]);
    expect(ln.bias!.toList()).toEqual([0, 0, 0, 0, 0, 0]);
    const x = f64([2, 3, 6], 1);
    const ref = py<{ keys: string[]; w: number[]; b: number[]; y: number[] }>(
      `
torch.manual_seed(0)
ln = torch.nn.LayerNorm(6, eps=1e-6)
with torch.no_grad():
    ln.weight.normal_(); ln.bias.normal_()
sd = ln.state_dict()
out = {"keys": list(sd.keys()), "w": L(sd["weight"]), "b": L(sd["bias"]), "y": L(ln(torch.tensor(inp["x"]).reshape(2, 3, 6)))}
`,
      { x: x.toList() },
    );
    expect(Object.keys(ln.stateDict())).toEqual(ref.keys);
    ln.loadStateDict({ weight: tensor(ref.w, { dtype: "float64" }), bias: tensor(ref.b, { dtype: "float64" }) });
    expectClose((ln.forward(x) as Tensor).toList(), ref.y, 1e-12);
  });

  it("elementwiseAffine: false and bias: false drop the parameters, as PyTorch", () => {
    expect(new nn.LayerNorm([2, 3], { elementwiseAffine: false }).numParameters()).toBe(0);
    expect(Object.keys(new nn.LayerNorm(4, { bias: false }).stateDict())).toEqual(["weight"]);
    expect(() => new nn.LayerNorm(0)).toThrow(/normalizedShape: expected a positive integer/);
  });
});

describe("nn.RMSNorm", () => {
  itTorch("weight starts at ones under the key `weight`, and the output equals the RMSNorm formula in PyTorch", () => {
    const norm = new nn.RMSNorm(4, { eps: 1e-6, dtype: "float64" });
    expect(Object.keys(norm.stateDict())).toEqual(["weight"]);
    expect(norm.weight!.toList()).toEqual([1, 1, 1, 1]);
    const x = f64([3, 4], 2);
    const ref = py<number[]>(`x = torch.tensor(inp["x"]).reshape(3, 4)\nout = L(x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6))`, { x: x.toList() });
    expectClose((norm.forward(x) as Tensor).toList(), ref, 1e-12);
  });
});

describe("nn.SiLU and nn.Identity", () => {
  itTorch("SiLU equals torch.nn.SiLU, values and gradients", () => {
    const leaf = f64([7], 3, true);
    const y = new nn.SiLU().forward(leaf.mul(4));
    y.sum().backward();
    const ref = py<Record<string, number[]>>(
      `x = torch.tensor(inp["x"]).requires_grad_()\ny = torch.nn.SiLU()(x * 4)\ny.sum().backward()\nout = {"y": L(y), "g": L(x.grad)}`,
      { x: leaf.toList() },
    );
    expectClose(y.toList(), ref.y, 1e-12);
    expectClose(leaf.grad!.toList(), ref.g, 1e-12);
  });

  it("Identity returns its very input and has no parameters", () => {
    const x = tensor([1, 2]);
    expect(new nn.Identity().forward(x)).toBe(x);
    expect(new nn.Identity().numParameters()).toBe(0);
  });

  it("SiLU refuses integer input, naming the argument", () => {
    expect(() => new nn.SiLU().forward(tensor([1], { dtype: "int64" }))).toThrow(/SiLU: input: expected a floating-point tensor, got int64/);
  });
});
