/**
 * In-place ops (add_, mul_, copy_, zero_): the values, the returned tensor, autograd through
 * them, and their refusal on leaves that require grad while grad mode is on, as in PyTorch.
 */
import { Tensor, noGrad, tensor, zeros } from "../../lib";
import { expectGradientMatchesFiniteDifferences, pseudoRandom } from "../helpers/gradcheck";
import { itTorch, py } from "../helpers/python";
import { expectClose } from "../helpers/stats";

const X = pseudoRandom(6, 21);

describe("in-place ops", () => {
  it("write into the tensor itself, return it, and keep it the same tensor (views see the write)", () => {
    const t = tensor([1, 2, 3, 4], { dtype: "float64" });
    const view = t.slice(0, 2);
    expect(t.add_(tensor([10, 20, 30, 40], { dtype: "float64" }))).toBe(t);
    expect(t.toList()).toEqual([11, 22, 33, 44]);
    expect(t.add_(1, { alpha: 2 }).toList()).toEqual([13, 24, 35, 46]);
    expect(t.add_(tensor([1, 1, 1, 1], { dtype: "float64" }), { alpha: -3 }).toList()).toEqual([10, 21, 32, 43]);
    expect(t.mul_(2)).toBe(t);
    expect(t.toList()).toEqual([20, 42, 64, 86]);
    expect(t.mul_(tensor([0.5], { dtype: "float64" })).toList()).toEqual([10, 21, 32, 43]);
    expect(view.toList()).toEqual([32, 43]);
    expect(t.copy_(tensor([[7, 8, 9, 10]]).reshape([4]))).toBe(t);
    expect(t.toList()).toEqual([7, 8, 9, 10]);
    expect(t.dtype).toBe("float64"); // copy_ converts to the destination's dtype
    expect(t.copy_(tensor([5])).toList()).toEqual([5, 5, 5, 5]); // and broadcasts the source
    expect(t.zero_()).toBe(t);
    expect(t.toList()).toEqual([0, 0, 0, 0]);
  });

  it("are refused on a leaf that requires grad while grad mode is on, and change nothing", () => {
    const w = tensor([1, 2, 3], { requiresGrad: true });
    const refusals: [string, () => unknown][] = [
      ["add_", () => w.add_(1)],
      ["mul_", () => w.mul_(2)],
      ["copy_", () => w.copy_(zeros([3]))],
      ["zero_", () => w.zero_()],
    ];
    for (const [op, fn] of refusals) {
      expect(fn).toThrow(
        new RegExp(`^${op}: cannot modify a leaf Tensor that requires grad in place \\(autograd needs its value\\); do it inside noGrad\\(\\)`),
      );
    }
    expect(w.toList()).toEqual([1, 2, 3]);
  });

  it("are allowed on such a leaf inside noGrad (a hand-written SGD step), which stays a leaf", () => {
    const w = tensor([1, 2, 3], { requiresGrad: true });
    w.mul(w).sum().backward();
    noGrad(() => w.add_(w.grad!, { alpha: -0.1 }));
    expectClose(w.toList(), [0.8, 1.6, 2.4], 1e-6);
    expect(w.isLeaf).toBe(true);
    expect(w.requiresGrad).toBe(true);
  });

  it("are recorded by autograd on non-leaf tensors: gradients match finite differences", () => {
    const f = (x: Tensor): Tensor => {
      const y = x.mul(1); // a non-leaf copy
      y.mul_(x).add_(x, { alpha: 2 }).add_(0.5);
      const z = zeros([2, 3], { dtype: "float64" });
      z.copy_(y.sin()); // copy_ makes z depend on x
      return z.mul(x);
    };
    expectGradientMatchesFiniteDifferences(f, X, [2, 3]);
  });

  itTorch("give PyTorch's values and gradients", () => {
    const x = tensor(X, { shape: [2, 3], dtype: "float64", requiresGrad: true });
    const y = x.mul(3);
    y.add_(x.sin(), { alpha: -2 }).mul_(x.cos());
    const z = zeros([2, 3], { dtype: "float64" }).copy_(y);
    z.slice(1, 0, 1).zero_();
    z.sum().backward();
    const ref = py<{ z: number[]; g: number[] }>(
      `
x = torch.tensor(inp["X"]).reshape(2, 3).requires_grad_()
y = x * 3
y.add_(x.sin(), alpha=-2).mul_(x.cos())
z = torch.zeros(2, 3).copy_(y)
z[:, 0:1].zero_()
z.sum().backward()
out = {"z": L(z), "g": L(x.grad)}
`,
      { X },
    );
    expectClose(z.toList(), ref.z, 1e-12, 1e-12);
    expectClose(x.grad!.toList(), ref.g, 1e-12, 1e-12);
  });

  it("bad input names the op and the shapes", () => {
    const t = tensor([1, 2, 3]);
    expect(() => t.add_(zeros([2, 3]))).toThrow(
      /^add_: other of shape \[2, 3\] broadcasts with \[3\] to \[2, 3\], but an in-place op must keep the shape \[3\] of the tensor it writes$/,
    );
    expect(() => t.mul_(zeros([2]))).toThrow(/^mul_: cannot broadcast shapes \[3\] and \[2\]/);
    expect(() => t.copy_(zeros([4]))).toThrow(/^copy_: cannot broadcast shapes \[3\] and \[4\]: dim -1 \(from the end\) is 3 in self and 4 in src/);
    expect(() => t.add_(1, { alpha: "2" as never })).toThrow(/^add_: alpha: expected a number, got the string "2"/);
    expect(t.toList()).toEqual([1, 2, 3]);
  });
});
