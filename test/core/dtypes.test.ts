/**
 * Every dtype round-trips its values through tensor()/toArray(), toBytes()/fromBytes() and
 * to(); byte layouts are checked against JS typed arrays and hand-encoded half/bfloat16 bits.
 */
import { Dtype, Tensor, arange, tensor, zeros } from "../../lib";
import { expectClose } from "../helpers/stats";

const FLOAT_VALUES = [0, 1, -2.5, 0.1, 1234.5678, -1e-3, 65504 / 2];
const REL_PRECISION: Record<string, number> = { float32: 2 ** -24, float64: 0, float16: 2 ** -11, bfloat16: 2 ** -8 };

describe("tensor() / toArray() round trips", () => {
  it.each(["float32", "float64", "float16", "bfloat16"] as Dtype[])("%s keeps values within its precision", (dtype) => {
    const t = tensor(FLOAT_VALUES, { dtype });
    expect(t.dtype).toBe(dtype);
    expect(t.shape).toEqual([FLOAT_VALUES.length]);
    const out = t.toArray();
    // Jest runs tests in another realm, so compare constructor names rather than identities.
    expect(out.constructor.name).toBe(dtype === "float64" ? "Float64Array" : "Float32Array");
    expectClose(Array.from(out as Float32Array), FLOAT_VALUES, 0, REL_PRECISION[dtype]);
  });

  it("float64 is exact, float32 equals Math.fround", () => {
    expect(Array.from(tensor(FLOAT_VALUES, { dtype: "float64" }).toArray() as Float64Array)).toEqual(FLOAT_VALUES);
    expect(Array.from(tensor(FLOAT_VALUES).toArray() as Float32Array)).toEqual(FLOAT_VALUES.map(Math.fround));
  });

  it("int32, uint8 and int64 keep integers exactly, including the range ends", () => {
    const i32 = [-(2 ** 31), -1, 0, 7, 2 ** 31 - 1];
    expect(Array.from(tensor(i32, { dtype: "int32" }).toArray() as Int32Array)).toEqual(i32);
    expect(Array.from(tensor([0, 1, 128, 255], { dtype: "uint8" }).toArray() as Uint8Array)).toEqual([0, 1, 128, 255]);
    const i64 = [-(2 ** 53) + 1, -5, 0, 2 ** 53 - 1];
    const out = tensor(i64, { dtype: "int64" }).toArray() as BigInt64Array;
    expect(out.constructor.name).toBe("BigInt64Array");
    expect(Array.from(out)).toEqual(i64.map(BigInt));
    expect(tensor(i64, { dtype: "int64" }).toList()).toEqual(i64);
  });

  it("int64 from a BigInt64Array is exact beyond 2^53", () => {
    const big = new BigInt64Array([2n ** 62n + 1n, -(2n ** 63n), 2n ** 63n - 1n]);
    const t = tensor(big);
    expect(t.dtype).toBe("int64");
    expect(Array.from(t.toArray() as BigInt64Array)).toEqual(Array.from(big));
  });

  it("bool from JS booleans or numbers, read back as 0/1", () => {
    const t = tensor([true, false, true]);
    expect(t.dtype).toBe("bool");
    expect(Array.from(t.toArray() as Uint8Array)).toEqual([1, 0, 1]);
    expect(tensor([0, 2, -1], { dtype: "bool" }).toList()).toEqual([0, 1, 1]);
  });

  it("typed arrays pick their own dtype and are copied", () => {
    const src = new Float32Array([1, 2, 3, 4, 5, 6]);
    const t = tensor(src, { shape: [2, 3] });
    src[0] = 99;
    expect(t.dtype).toBe("float32");
    expect(t.shape).toEqual([2, 3]);
    expect(t.toList()).toEqual([1, 2, 3, 4, 5, 6]);
    expect(tensor(new Int32Array([4, 5])).dtype).toBe("int32");
    expect(tensor(new Uint8Array([4, 5])).dtype).toBe("uint8");
    expect(tensor(new Float64Array([4, 5])).dtype).toBe("float64");
    // A typed array at an offset inside a larger buffer reads only its own window.
    const window = new Float32Array(new Float32Array([9, 8, 7, 6]).buffer, 4, 2);
    expect(tensor(window).toList()).toEqual([8, 7]);
  });
});

describe("shapes of created tensors", () => {
  it("nested arrays give their nested shape in row-major order", () => {
    const t = tensor([
      [
        [1, 2],
        [3, 4],
        [5, 6],
      ],
      [
        [7, 8],
        [9, 10],
        [11, 12],
      ],
    ]);
    expect(t.shape).toEqual([2, 3, 2]);
    expect(t.toList()).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    expect(t.narrow(1, 2, 1).toList()).toEqual([5, 6, 11, 12]);
  });

  it("a flat array with a shape", () => {
    const t = tensor([1, 2, 3, 4, 5, 6], { shape: [3, 2] });
    expect(t.shape).toEqual([3, 2]);
    expect(t.t().contiguous().toList()).toEqual([1, 3, 5, 2, 4, 6]);
  });

  it("a scalar has shape [] and item() returns it", () => {
    const t = tensor(3.25);
    expect(t.shape).toEqual([]);
    expect(t.ndim).toBe(0);
    expect(t.numel).toBe(1);
    expect(t.item()).toBe(3.25);
    expect(tensor(-7, { dtype: "int64" }).item()).toBe(-7);
  });

  it("empty tensors", () => {
    const t = tensor([]);
    expect(t.shape).toEqual([0]);
    expect(t.toList()).toEqual([]);
    expect(zeros([2, 0, 3]).numel).toBe(0);
    expect(zeros([2, 0]).toBytes().length).toBe(0);
  });
});

describe("integer dtypes and JS numbers", () => {
  it("values outside an integer dtype's range are refused instead of wrapping", () => {
    expect(() => tensor([300], { dtype: "uint8" })).toThrow(/data\[0\]: 300 is outside the uint8 range \[0, 255\]/);
    expect(() => tensor([1, -1], { dtype: "uint8" })).toThrow(/data\[1\]: -1 is outside/);
    expect(() => tensor([2 ** 31], { dtype: "int32" })).toThrow(/int32 range/);
    expect(() => tensor(new Float32Array([0.5]), { dtype: "int32" })).toThrow(/data\[0\]: 0.5 is not an integer/);
  });

  it("an integral number operand keeps an integer tensor integer, as a Python int does in PyTorch", () => {
    const i = tensor([1, 2], { dtype: "int64" });
    expect(i.add(1).dtype).toBe("int64");
    expect(i.mul(3).toList()).toEqual([3, 6]);
    expect(i.maximum(2).dtype).toBe("int64");
    expect(tensor([1, 2], { dtype: "uint8" }).sub(1).dtype).toBe("uint8");
    expect(tensor([true, false]).add(1).dtype).toBe("int64");
    // A fractional operand promotes to the default float dtype, as in PyTorch.
    expect(i.add(0.5).dtype).toBe("float32");
    expect(i.add(0.5).toList()).toEqual([1.5, 2.5]);
    // Half tensors stay half with integral operands, and -0 is kept a float (x · -0 = -0).
    expect(tensor([1], { dtype: "float16" }).add(1).dtype).toBe("float16");
    expect(Object.is(tensor([1]).mul(-0).item(), -0)).toBe(true);
    expect(() => i.pow(-1)).toThrow(/Integers to negative integer powers are not allowed/);
  });
});

describe("arange", () => {
  it("is int64 when every argument is an integer (as in PyTorch), float32 otherwise", () => {
    const a = arange(5);
    expect(a.dtype).toBe("int64");
    expect(a.toList()).toEqual([0, 1, 2, 3, 4]);
    expect(arange(2, 11, 3).toList()).toEqual([2, 5, 8]);
    expect(arange(3, 0, -1).toList()).toEqual([3, 2, 1]);
    const f = arange(0, 1, 0.25);
    expect(f.dtype).toBe("float32");
    expect(f.toList()).toEqual([0, 0.25, 0.5, 0.75]);
    expect(arange(4, undefined, 1, { dtype: "float64" }).dtype).toBe("float64");
  });
});

describe("toBytes / fromBytes", () => {
  it("float32, float64, int32, int64, uint8 bytes equal the JS typed array's bytes", () => {
    const cases: [Dtype, ArrayBufferView][] = [
      ["float32", new Float32Array([1.5, -2, 0.1])],
      ["float64", new Float64Array([1.5, -2, 0.1])],
      ["int32", new Int32Array([-3, 0, 2 ** 30])],
      ["int64", new BigInt64Array([-3n, 0n, 2n ** 60n])],
      ["uint8", new Uint8Array([0, 7, 255])],
    ];
    for (const [dtype, arr] of cases) {
      const t = tensor(arr);
      const expected = Buffer.from(arr.buffer, arr.byteOffset, arr.byteLength);
      expect(t.toBytes().equals(expected)).toBe(true);
      const back = Tensor.fromBytes(expected, [3], dtype);
      expect(back.dtype).toBe(dtype);
      expect(back.equal(t)).toBe(true);
    }
  });

  it("float16 and bfloat16 use IEEE half / truncated-float32 bit patterns (little-endian)", () => {
    // 1 -> 0x3C00 / 0x3F80, -2 -> 0xC000 / 0xC000, 0.5 -> 0x3800 / 0x3F00
    expect([...tensor([1, -2, 0.5], { dtype: "float16" }).toBytes()]).toEqual([0x00, 0x3c, 0x00, 0xc0, 0x00, 0x38]);
    expect([...tensor([1, -2, 0.5], { dtype: "bfloat16" }).toBytes()]).toEqual([0x80, 0x3f, 0x00, 0xc0, 0x00, 0x3f]);
    const h = Tensor.fromBytes(new Uint8Array([0x00, 0x3c, 0x00, 0xc0, 0x00, 0x38]), [3], "float16");
    expect(h.toList()).toEqual([1, -2, 0.5]);
    const b = Tensor.fromBytes(new Uint8Array([0x80, 0x3f, 0x00, 0xc0, 0x00, 0x3f]), [3], "bfloat16");
    expect(b.toList()).toEqual([1, -2, 0.5]);
  });

  it.each(["float32", "float64", "float16", "bfloat16", "int64", "int32", "uint8", "bool"] as Dtype[])(
    "%s: fromBytes(toBytes(t)) is bit-identical, shape included",
    (dtype) => {
      const t = tensor(
        [
          [1, 0, 3],
          [4, 5, 1],
        ],
        { dtype },
      );
      const bytes = t.toBytes();
      expect(bytes.length).toBe(6 * { float32: 4, float64: 8, float16: 2, bfloat16: 2, int64: 8, int32: 4, uint8: 1, bool: 1 }[dtype]);
      const back = Tensor.fromBytes(bytes, [2, 3], dtype);
      expect(back.shape).toEqual([2, 3]);
      expect(back.equal(t)).toBe(true);
      expect(back.toBytes().equals(bytes)).toBe(true);
    },
  );

  it("toBytes of a non-contiguous view gives the logical (row-major) order", () => {
    const t = tensor(
      [
        [1, 2],
        [3, 4],
      ],
      { dtype: "int32" },
    ).t();
    expect(Array.from(new Int32Array(new Uint8Array(t.toBytes()).buffer))).toEqual([1, 3, 2, 4]);
  });
});

describe("to()", () => {
  const all: Dtype[] = ["float32", "float64", "float16", "bfloat16", "int64", "int32", "uint8", "bool"];

  it.each(all)("float64 -> %s -> float64 keeps small integers exactly", (dtype) => {
    const src = tensor([0, 1, 2, 3, 100], { dtype: "float64" });
    const there = src.to(dtype);
    expect(there.dtype).toBe(dtype);
    const expected = dtype === "bool" ? [0, 1, 1, 1, 1] : [0, 1, 2, 3, 100];
    expect(there.to("float64").toList()).toEqual(expected);
  });

  it.each(["float16", "bfloat16", "float32"] as Dtype[])("float64 -> %s rounds within the format's precision", (dtype) => {
    const values = [0.1, -3.14159, 1000.5, 1e-2];
    const back = tensor(values, { dtype: "float64" }).to(dtype).to("float64").toList();
    expectClose(back, values, 0, REL_PRECISION[dtype]);
  });

  it("floats to ints truncate toward zero, as in PyTorch", () => {
    expect(tensor([1.7, -1.7, 2.5]).to("int32").toList()).toEqual([1, -1, 2]);
    expect(tensor([1.7, -1.7, 2.5]).to("int64").toList()).toEqual([1, -1, 2]);
  });

  it("accepts an options object with dtype and device, and returns a new tensor", () => {
    const a = tensor([1, 2]);
    const b = a.to({ dtype: "float64", device: "cpu" });
    expect(b.dtype).toBe("float64");
    expect(b.device).toBe("cpu");
    expect(a.dtype).toBe("float32");
    expect(a.cpu().device).toBe("cpu");
  });
});
