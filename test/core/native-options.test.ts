/**
 * The readers of named options objects (native/options.h): called past the facade, a field of
 * the wrong JS type is refused with an error naming the field, what was expected and what was
 * given, and nothing runs. One case per reader, through the entry points that use it; and the
 * plain refusals of a dtype or device name the native side cannot map.
 */
import { native, NativeTensor } from "../../lib/binding";
import { zeros } from "../../lib";
import { DTYPES } from "../../lib/dtype";
import { handleOf } from "../../lib/tensor";
import { thrownBy } from "../helpers/errors";

const h = (...shape: number[]): NativeTensor => handleOf(zeros(shape));

/** A loraMixedLinear call on a 2×3 input and a 4×3 weight, with `patch` over valid options. */
const mixed = (patch: object): unknown =>
  native.loraMixedLinear({ input: h(2, 3), weight: h(4, 3), bias: null, fanInFanOut: false, factors: [], scales: [], rows: [-1, -1], ...patch });

const CASES: [reader: string, fn: () => unknown, message: string, name: string][] = [
  ["OptionsArg (an array)", () => native.scatterAdd(h(2), [] as never), "options: expected an options object, got an array", "TypeError"],
  ["OptionsArg (a handle)", () => native.loraMixedLinear(h(2) as never), "options: expected an options object, got a native handle", "TypeError"],
  ["IntOption", () => native.scatterAdd(h(2), { dim: 0.5, index: h(2), src: h(2) }), "dim: expected an integer, got 0.5", "TypeError"],
  [
    "IntOption in a range",
    () => native.distConnect({ host: "127.0.0.1", port: 70000, isServer: true, rank: 0, worldSize: 1, timeoutMs: 100 }),
    "port: expected an integer in [1, 65535], got 70000",
    "RangeError",
  ],
  [
    "OptionalIntOption",
    () => native.slice(h(4), { dim: 0, start: "1" as never, end: null, step: 1 }),
    'start: expected an integer, got the string "1"',
    "TypeError",
  ],
  ["NumberOption", () => native.indexAdd(h(2), { dim: 0, index: h(1), source: h(1), alpha: null as never }), "alpha: expected a number, got null", "TypeError"],
  ["BoolOption", () => mixed({ fanInFanOut: 1 }), "fanInFanOut: expected a boolean, got 1", "TypeError"],
  [
    "BoolOption with a fallback",
    () => native.topk(h(4), { k: 1, dim: 0, largest: "yes" as never, sorted: true }),
    'largest: expected a boolean, got the string "yes"',
    "TypeError",
  ],
  [
    "StringOption",
    () => native.loraInitFromWeight({ weight: h(4, 3), A: h(2, 3), B: h(4, 2), method: 1 as never, niter: -1, scale: 1, fanInFanOut: false }),
    "method: expected a string, got 1",
    "TypeError",
  ],
  ["NumberListOption", () => mixed({ rows: [-1, "0"] }), 'rows[1]: expected a number, got the string "0"', "TypeError"],
  ["NumberListOption (not a list)", () => mixed({ scales: 1 }), "scales: expected an array of numbers, got 1", "TypeError"],
  ["OptionalIntListOption", () => native.var(h(4), { dim: [0.5], correction: 1, keepdim: false }), "dim[0]: expected an integer, got 0.5", "TypeError"],
  [
    "ShapeOption",
    () => native.layerNorm({ input: h(2, 3), normalizedShape: [-3], weight: null, bias: null, eps: 1e-5 }),
    "normalizedShape[0]: expected a non-negative integer, got -3",
    "TypeError",
  ],
  ["TensorOption", () => mixed({ weight: [1] }), "weight: expected a Tensor, got an array", "TypeError"],
  ["OptionalTensorOption", () => mixed({ bias: 0 }), "bias: expected a Tensor, got 0", "TypeError"],
  ["TensorListOption", () => mixed({ factors: [h(1), {}] }), "factors[1]: expected a Tensor, got an object", "TypeError"],
];

describe("native options readers", () => {
  for (const [reader, fn, message, name] of CASES) {
    it(`${reader}: ${message}`, () => {
      const err = thrownBy(fn);
      expect(err.message).toContain(message);
      expect(err.name).toBe(name);
    });
  }
});

// lib/dtype.ts words a wrong dtype or device for users; past it, the native side only refuses
// what it cannot map, and never hands libtorch a device index it does not have.
const NAME_CASES: [what: string, fn: () => unknown, message: string, name: string][] = [
  ["an unknown dtype", () => native.to(h(1), "float8", null), 'dtype: unknown dtype "float8"', "TypeError"],
  ["an unknown device", () => native.to(h(1), null, "tpu"), 'device: unknown device "tpu"', "TypeError"],
  ["a device index with a leading zero", () => native.to(h(1), null, "cuda:01"), 'device: unknown device "cuda:01"', "TypeError"],
  ["a CUDA index past any machine's devices", () => native.to(h(1), null, "cuda:999"), 'device: no device "cuda:999" on this machine', "RangeError"],
];

describe("native dtype and device names", () => {
  for (const [what, fn, message, name] of NAME_CASES) {
    it(`${what}: ${message}`, () => {
      const err = thrownBy(fn);
      expect(err.message).toBe(message);
      expect(err.name).toBe(name);
    });
  }

  it("maps every dtype name lib/dtype.ts knows", () => {
    for (const dtype of DTYPES) expect(native.dtype(native.to(h(1), dtype, "cpu"))).toBe(dtype);
  });
});
