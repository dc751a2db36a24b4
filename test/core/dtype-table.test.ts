/**
 * lib/dtype.ts is the one table of dtype facts: its sizes and floating flags agree with what
 * libtorch does with each dtype, and `Tensor.to()` tells a dtype from a device by that table.
 */
import { DTYPES, Dtype, dtypeSize, isDtype, isFloatingDtype } from "../../lib/dtype";
import { zeros } from "../../lib";
import { thrownBy } from "../helpers/errors";

describe("the dtype table", () => {
  it.each([...DTYPES])("%s: its size is the bytes libtorch stores per element", (dtype) => {
    const t = zeros([3, 5], { dtype });
    expect(t.dtype).toBe(dtype);
    expect(t.toBytes().length).toBe(15 * dtypeSize(dtype));
  });

  it.each([...DTYPES])("%s: floating exactly when libtorch lets it require gradients", (dtype) => {
    const t = zeros([2], { dtype });
    // A second path: libtorch's own refusal (native setRequiresGrad) for non-floating dtypes.
    let refused = false;
    try {
      t.requiresGrad = true;
    } catch {
      refused = true;
    }
    expect(isFloatingDtype(dtype)).toBe(!refused);
  });

  it("lists the eight dtypes of the Dtype type, and knows no other name", () => {
    const all: Record<Dtype, true> = { float32: true, float64: true, float16: true, bfloat16: true, int64: true, int32: true, uint8: true, bool: true };
    expect([...DTYPES].sort()).toEqual(Object.keys(all).sort());
    for (const name of ["float8", "Float32", "cpu", "toString", "constructor", ""]) {
      expect(isDtype(name)).toBe(false);
      expect(isFloatingDtype(name)).toBe(false);
    }
  });
});

describe("Tensor.to(name)", () => {
  it("reads a dtype name as a dtype and a device name as a device", () => {
    const x = zeros([2], { dtype: "float64" });
    // "cpu" starts with "c" as no dtype does; "bool" and "bfloat16" start with "b": none is a device.
    for (const dtype of DTYPES) {
      const y = x.to(dtype);
      expect([y.dtype, y.device]).toEqual([dtype, "cpu"]);
    }
    const y = x.to("cpu");
    expect([y.dtype, y.device]).toEqual(["float64", "cpu"]);
  });

  it.each(["tpu", "Float32", "cuda:01", ""])("refuses %j naming both what a dtype and what a device would be", (bad) => {
    const err = thrownBy(() => zeros([1]).to(bad as never));
    expect(err).toBeInstanceOf(TypeError);
    expect(err.message).toBe(
      `options: unknown dtype or device ${JSON.stringify(bad)}; expected a dtype (float32, float64, float16, bfloat16, int64, int32, uint8, bool) or "cpu", "cuda" or "cuda:N"`,
    );
  });
});
