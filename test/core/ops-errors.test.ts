/**
 * Tensor op errors name the op, both shapes and the rule that was broken, and never show
 * libtorch's C++ frames: one regression case per op family (matrix products, view/reshape,
 * narrow, broadcasting elementwise ops, joins), each message checked in full.
 */
import { Tensor, cat, stack, tensor, zeros } from "../../lib";
import { stripNativeFrames } from "../../lib/op-errors";

function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (e) {
    return e as Error;
  }
  throw new Error("expected the call to throw");
}

type Case = [name: string, fn: () => unknown, message: string, kind: typeof Error];

const z = (...shape: number[]): Tensor => zeros(shape);

const CASES: Case[] = [
  // matrix products
  [
    "matmul 2-D",
    () => z(2, 3).matmul(z(4, 5)),
    "matmul: cannot multiply shapes [2, 3] and [4, 5]: the last dim of the first (3) must equal the second-to-last of the second (4)",
    RangeError,
  ],
  [
    "matmul 1-D",
    () => z(3).matmul(z(4)),
    "matmul: cannot multiply shapes [3] and [4]: the last dim of the first (3) must equal the size of the second (4)",
    RangeError,
  ],
  [
    "matmul batched",
    () => z(2, 3, 4).matmul(z(3, 4, 5)),
    "matmul: cannot multiply shapes [2, 3, 4] and [3, 4, 5]: the batch dims [2] and [3] do not broadcast: batch dim -1 (from the end) is 2 in the first and 3 in the second; sizes must be equal, or one of them 1",
    RangeError,
  ],
  [
    "matmul 0-D",
    () => tensor(2).matmul(z(2)),
    "matmul: cannot multiply shapes [] and [2]: both operands need at least one dim (use mul() for scalars)",
    RangeError,
  ],
  // view and reshape
  [
    "view element count",
    () => z(2, 3).view([4, 2]),
    "view: cannot view shape [2, 3] as [4, 2]: the new shape holds 8 elements, the tensor 6; the counts must be equal",
    RangeError,
  ],
  [
    "view layout",
    () => z(2, 3).t().view([6]),
    "view: cannot view shape [3, 2] as [6]: the element counts match, but the tensor's memory layout (after a transpose, permute or expand) does not allow this view without a copy; use reshape(), or contiguous().view()",
    RangeError,
  ],
  [
    "reshape element count",
    () => z(2, 3).reshape([5]),
    "reshape: cannot reshape shape [2, 3] as [5]: the new shape holds 5 elements, the tensor 6; the counts must be equal",
    RangeError,
  ],
  [
    "reshape with -1 that does not divide",
    () => z(2, 3).reshape([4, -1]),
    "reshape: cannot reshape shape [2, 3] as [4, -1]: the tensor's 6 elements do not divide by the 4 of the known dims, so -1 has no size",
    RangeError,
  ],
  ["reshape with two -1", () => z(2, 3).reshape([-1, -1]), "reshape: cannot reshape shape [2, 3] as [-1, -1]: only one dim may be -1", RangeError],
  // narrow
  ["narrow past the end", () => z(2, 4).narrow(1, 3, 2), "narrow: start (3) + length (2) exceeds the size of dim 1 (4) of shape [2, 4]", RangeError],
  [
    "narrow along a missing dim",
    () => z(2, 4).narrow(2, 0, 1),
    "narrow: dim 2 is out of range for a tensor with 2 dims (expected a dim in [-2, 1])",
    RangeError,
  ],
  // broadcasting elementwise ops
  [
    "add",
    () => z(2, 3).add(z(4)),
    "add: cannot broadcast shapes [2, 3] and [4]: dim -1 (from the end) is 3 in self and 4 in other; sizes must be equal, or one of them 1",
    RangeError,
  ],
  [
    "sub",
    () => z(5, 2, 3).sub(z(4, 3)),
    "sub: cannot broadcast shapes [5, 2, 3] and [4, 3]: dim -2 (from the end) is 2 in self and 4 in other; sizes must be equal, or one of them 1",
    RangeError,
  ],
  [
    "mul",
    () => z(2, 3).mul(z(3, 2)),
    "mul: cannot broadcast shapes [2, 3] and [3, 2]: dim -1 (from the end) is 3 in self and 2 in other; sizes must be equal, or one of them 1",
    RangeError,
  ],
  [
    "div",
    () => z(3).div(z(2)),
    "div: cannot broadcast shapes [3] and [2]: dim -1 (from the end) is 3 in self and 2 in other; sizes must be equal, or one of them 1",
    RangeError,
  ],
  [
    "pow",
    () => z(3).pow(z(2)),
    "pow: cannot broadcast shapes [3] and [2]: dim -1 (from the end) is 3 in self and 2 in other; sizes must be equal, or one of them 1",
    RangeError,
  ],
  [
    "eq",
    () => z(3).eq(z(2)),
    "eq: cannot broadcast shapes [3] and [2]: dim -1 (from the end) is 3 in self and 2 in other; sizes must be equal, or one of them 1",
    RangeError,
  ],
  [
    "maximum",
    () => z(3).maximum(z(2)),
    "maximum: cannot broadcast shapes [3] and [2]: dim -1 (from the end) is 3 in self and 2 in other; sizes must be equal, or one of them 1",
    RangeError,
  ],
  // joins
  ["cat", () => cat([z(2, 3), z(2, 4)], 0), "cat: tensors[1] has shape [2, 4] but tensors[0] has [2, 3]: cat needs equal shapes except in dim 0", RangeError],
  ["cat along a missing dim", () => cat([z(2, 3), z(2, 3)], 2), "cat: dim 2 is out of range for a tensor with 2 dims (expected a dim in [-2, 1])", RangeError],
  ["stack", () => stack([z(2, 3), z(3, 2)]), "stack: tensors[1] has shape [3, 2] but tensors[0] has [2, 3]: stack needs tensors of equal shapes", RangeError],
  // reductions and dims
  ["sum along a missing dim", () => z(2, 3).sum([0, 2]), "sum: dim 2 is out of range for a tensor with 2 dims (expected a dim in [-2, 1])", RangeError],
  ["transpose", () => z(2, 3).transpose(0, -3), "transpose: dim -3 is out of range for a tensor with 2 dims (expected a dim in [-2, 1])", RangeError],
];

describe("op errors name the op, both shapes and the rule", () => {
  for (const [name, fn, message, kind] of CASES) {
    it(name, () => {
      const e = thrown(fn);
      expect(e).toBeInstanceOf(kind);
      expect(e.message).toBe(message);
    });
  }

  it("errors without a known rule still name the op and the operand shapes", () => {
    const e = thrown(() => z(2, 3).indexSelect(0, tensor([7], { dtype: "int64" })));
    expect(e.message).toMatch(/^indexSelect: .*out of range.* \(shapes: self \[2, 3\], index \[1\]\)$/);
  });

  it("argument errors keep their class and gain the op's name", () => {
    const e = thrown(() => z(2).add("3" as never));
    expect(e).toBeInstanceOf(TypeError);
    expect(e.message).toBe('add: other: expected a Tensor, got the string "3"');
    const d = zeros([2]);
    d.dispose();
    expect(thrown(() => z(2).mul(d)).message).toMatch(/^mul: other: the Tensor was disposed and can no longer be used \(shapes: self \[2\]\)$/);
  });

  it("never show C++ frames or source locations", () => {
    for (const [, fn] of CASES) {
      const { message } = thrown(fn);
      expect(message).not.toMatch(/frame #|Exception raised from|\.cpp:\d+|\.h:\d+|c10::|at::/);
      expect(message).not.toContain("\n");
    }
  });
});

describe("stripNativeFrames", () => {
  it("drops the frames and source locations libtorch builds append", () => {
    const raw =
      "The size of tensor a (3) must match the size of tensor b (4) at non-singleton dimension 1\n" +
      "Exception raised from infer_size_impl at ../aten/src/ATen/ExpandUtils.cpp:35 (most recent call first):\n" +
      "frame #0: c10::Error::Error(c10::SourceLocation, std::string) + 0x57 (0x7f in libc10.so)\n" +
      "frame #1: at::infer_size_dimvector(c10::ArrayRef<long>, c10::ArrayRef<long>) + 0x3a5";
    expect(stripNativeFrames(raw)).toBe("The size of tensor a (3) must match the size of tensor b (4) at non-singleton dimension 1");
  });
  it("drops frame lines that come without the 'Exception raised from' header", () => {
    const raw = "mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)\nframe #0: at::native::addmm_impl_cpu_ + 0x12\nframe #1: at::meta::structured_addmm";
    expect(stripNativeFrames(raw)).toBe("mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)");
  });
});
