/**
 * Bad input: each case throws a JS Error whose message names the argument and what was
 * given, leaves its inputs unchanged, and never takes the process down.
 */
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { Tensor, arange, cat, crossEntropy, cuda, empty, full, init, manualSeed, tensor, zeros } from "../../lib";
import { thrownBy } from "../helpers/errors";
import { NOT_BUILT, itUnless } from "../helpers/skip";

type Case = [name: string, fn: () => unknown, message: RegExp, kind?: typeof TypeError | typeof RangeError];

const disposed = (): Tensor => {
  const t = zeros([2]);
  t.dispose();
  return t;
};

// A CPU build refuses CUDA devices; a CUDA build refuses one that does not exist.
const CUDA_CASES: Case[] = cuda.isAvailable()
  ? [
      [
        "a CUDA device that does not exist",
        () => zeros([1], { device: "cuda:99" }),
        /device: device "cuda:99" does not exist; \d+ CUDA device\(s\) are visible/,
        RangeError,
      ],
      ["cuda:200 in to(), past c10's 8-bit device index", () => zeros([1]).to("cuda:200"), /device: device "cuda:200" does not exist/, RangeError],
    ]
  : [
      ["cuda on a CPU build", () => zeros([1], { device: "cuda" }), /device: CUDA is not available \(device "cuda"\)/],
      ["cuda:0 in to() on a CPU build", () => zeros([1]).to("cuda:0"), /device: CUDA is not available \(device "cuda:0"\)/],
    ];

const CASES: Case[] = [
  ...CUDA_CASES,
  ["a device index with a leading zero", () => zeros([1], { device: "cuda:01" as never }), /device: unknown device "cuda:01"/, TypeError],
  [
    "matmul with incompatible shapes",
    () => zeros([2, 3]).matmul(zeros([2, 3])),
    /^matmul: cannot multiply shapes \[2, 3\] and \[2, 3\]: the last dim of the first \(3\) must equal the second-to-last of the second \(2\)$/,
    RangeError,
  ],
  ["unknown dtype", () => zeros([1], { dtype: "float8" as never }), /dtype: unknown dtype "float8"; expected one of float32/, TypeError],
  ["unknown dtype in to()", () => zeros([1]).to({ dtype: 5 as never }), /dtype: unknown dtype 5/, TypeError],
  ["unknown device", () => tensor([1], { device: "tpu" as never }), /device: unknown device "tpu"/, TypeError],
  ["use after dispose", () => disposed().add(1), /self: the Tensor was disposed/],
  ["disposed tensor as the other operand", () => zeros([2]).mul(disposed()), /other: the Tensor was disposed/],
  ["shape of a disposed tensor", () => disposed().shape, /tensor: the Tensor was disposed/],
  ["non-Tensor matmul operand", () => zeros([2]).matmul([1, 2] as never), /other: expected a Tensor, got an array of length 2/, TypeError],
  ["string operand", () => zeros([2]).add("3" as never), /other: expected a Tensor, got the string "3"/, TypeError],
  ["non-Tensor in cat", () => cat([zeros([1]), 3 as never]), /tensors\[1\]: expected a Tensor, got 3/, TypeError],
  ["non-Tensor to init", () => init.normal_({} as never), /tensor: expected a Tensor, got an object/, TypeError],
  ["requiresGrad on int64", () => tensor([1], { dtype: "int64", requiresGrad: true }), /requiresGrad: only floating-point.*int64/, TypeError],
  ["requiresGrad = true on int32", () => (zeros([1], { dtype: "int32" }).requiresGrad = true), /requiresGrad: only floating-point.*int32/, TypeError],
  ["ragged rows", () => tensor([[1, 2], [3]]), /data: ragged nested array \(expected 2 entries at depth 1, got 1\)/, RangeError],
  ["number among rows", () => tensor([[1, 2], 3 as never]), /data: ragged nested array/, RangeError],
  ["shape/data length mismatch", () => tensor([1, 2, 3], { shape: [2, 2] }), /shape: \[2, 2\] holds 4 elements but data has 3/, RangeError],
  ["fromBytes length mismatch", () => Tensor.fromBytes(new Uint8Array(3), [1], "float32"), /bytes: shape \[1\] of float32 needs 4 bytes, got 3/, RangeError],
  ["item() on many elements", () => zeros([3]).item(), /item\(\): the tensor must hold exactly one element, it holds 3/, RangeError],
  ["non-integer ids for int64", () => tensor([1.5, 2], { dtype: "int64" }), /data\[0\]: 1.5 is not an integer, but dtype is int64/, RangeError],
  ["NaN id for int32", () => tensor([0, NaN], { dtype: "int32" }), /data\[1\]: NaN is not an integer/, RangeError],
  ["strings as data", () => tensor(["a"] as never), /data: expected numbers, got the string "a"/, TypeError],
  ["negative shape", () => zeros([-1, 2]), /shape: expected an array of non-negative integers.*\[-1, 2\]/, TypeError],
  ["fractional dim", () => zeros([2, 3]).sum(0.5), /dim\[0\]: expected an integer, got 0.5/, TypeError],
  ["dim out of range", () => zeros([2, 3]).softmax(4), /^softmax: dim 4 is out of range for a tensor with 2 dims \(expected a dim in \[-2, 1\]\)$/, RangeError],
  ["size() out of range", () => zeros([2]).size(3), /dim: expected an integer in \[-1, 0\], got 3/, RangeError],
  ["float class targets", () => crossEntropy(zeros([2, 3]), tensor([0, 1])), /target: expected class indices of dtype int64, got float32/, TypeError],
  ["class target out of range", () => crossEntropy(zeros([2, 3]), tensor([0, 7], { dtype: "int64" })), /Target 7 is out of bounds/],
  ["dropout probability", () => zeros([3]).dropout(2), /p: dropout probability must be in \[0, 1\], got 2/, RangeError],
  ["negative seed", () => manualSeed(-1), /seed: expected a non-negative integer, got -1/, RangeError],
  ["negative std", () => init.normal_(zeros([3]), 0, -1), /std: must be >= 0, got -1/, RangeError],
  ["init on an int tensor", () => init.zeros_(zeros([3], { dtype: "int64" })), /tensor: init functions need a floating-point tensor, got int64/, TypeError],
  ["kaiming on a vector", () => init.kaiming_uniform_(zeros([3])), /kaiming_uniform_: fan in and fan out cannot be computed.*got 1/, RangeError],
  ["kaiming a NaN", () => init.kaiming_normal_(zeros([3, 3]), { a: NaN }), /^a: expected a finite number, got NaN$/, RangeError],
  ["uniform_ a > b", () => init.uniform_(zeros([3]), 2, 1), /^uniform_: a must be <= b, got a=2 b=1$/, RangeError],
  ["xavier gain Infinity", () => init.xavier_uniform_(zeros([3, 3]), Infinity), /^gain: expected a finite number, got Infinity$/, RangeError],
  ["allclose atol -1", () => zeros([1]).allclose(zeros([1]), { atol: -1 }), /^atol: expected a finite number >= 0, got -1$/, RangeError],
  [
    "labelSmoothing 1.5",
    () => crossEntropy(zeros([2, 3]), tensor([0, 1], { dtype: "int64" }), { labelSmoothing: 1.5 }),
    /^labelSmoothing: expected a number in \[0, 1\], got 1.5$/,
    RangeError,
  ],
  ["unknown fan mode", () => init.kaiming_normal_(zeros([3, 3]), { mode: "fan" as never }), /mode: expected "fan_in" or "fan_out", got "fan"/, TypeError],
  ["zero arange step", () => arange(0, 3, 0), /step: must be a finite non-zero number, got 0/, RangeError],
  ["non-number fill", () => full([2], "x" as never), /value: expected a number, got the string "x"/, TypeError],
  [
    "float16 matmul on CPU",
    () => zeros([2, 2], { dtype: "float16" }).matmul(zeros([2, 2], { dtype: "float16" })),
    /not implemented for 'Half'.*to\("float32"\)/,
  ],
  ["impossible allocation", () => empty([1e6, 1e6, 1e6]), /can't allocate memory/],
];

describe("bad input throws a clear JS Error", () => {
  // Each row is passed whole: a trailing undefined column would make Jest pass `done` instead.
  it.each(CASES.map((c) => [c[0], c] as const))("%s", (_name, [, fn, message, kind]) => {
    const caught = thrownBy(fn);
    expect(caught.message).toMatch(message);
    if (kind) expect(caught.name).toBe(kind.name);
  });

  it("a failed call changes nothing: the tensor keeps its values and stays usable", () => {
    const t = tensor([
      [1, 2],
      [3, 4],
    ]);
    const before = t.toBytes();
    expect(() => init.normal_(t, 0, -1)).toThrow();
    expect(() => init.kaiming_uniform_(t, { mode: "x" as never })).toThrow();
    expect(() => t.matmul(zeros([3, 3]))).toThrow();
    expect(() => t.reshape([3])).toThrow();
    expect(t.toBytes().equals(before)).toBe(true);
    expect(t.add(1).toList()).toEqual([2, 3, 4, 5]);
    const d = disposed();
    expect(d.isDisposed).toBe(true);
    expect(d.toString()).toBe("Tensor(disposed)");
    expect(() => d.dispose()).not.toThrow();
  });
});

describe("the process survives bad input (child process against dist/)", () => {
  const dist = path.resolve(__dirname, "../../dist/lib/index.js");
  const run = (title: string, fn: () => void) => itUnless(fs.existsSync(dist) ? null : NOT_BUILT, title, fn);
  run("a batch of bad calls in `node -e` exits with code 0 and reports every error", () => {
    const script = `
      const t = require(${JSON.stringify(dist)});
      const calls = [
        () => t.zeros([2, 3]).matmul(t.zeros([2, 3])),
        () => t.zeros([1], { device: "cuda:99" }),
        () => { const a = t.zeros([2]); a.dispose(); a.sum(); },
        () => t.tensor([[1, 2], [3]]),
        () => t.tensor([1.5], { dtype: "int64" }),
        () => t.zeros([3]).item(),
        () => t.zeros([2]).add({}),
        () => t.crossEntropy(t.zeros([2, 3]), t.tensor([0, 9], { dtype: "int64" })),
        () => t.tensor([1], { requiresGrad: true }).mul(t.tensor([1, 2])).backward(),
        () => t.zeros([2, 2], { dtype: "float16" }).exp(),
        () => t.empty([1e6, 1e6, 1e6]),
        () => t.zeros([2]).indexSelect(0, t.tensor([5], { dtype: "int64" })),
      ];
      let errors = 0;
      for (const c of calls) { try { c(); } catch (e) { if (e instanceof Error && e.message) errors++; } }
      console.log(JSON.stringify({ errors, sum: t.ones([3]).sum().item() }));
    `;
    const r = spawnSync(process.execPath, ["-e", script], { encoding: "utf8" });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ errors: 12, sum: 3 });
  });
});
