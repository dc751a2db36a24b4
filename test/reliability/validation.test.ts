/**
 * Input validation across the public API (complementing test/core/errors.test.ts): each bad call
 * throws a JS Error of the stated kind whose message names the argument, the expectation and
 * the given value, and leaves its inputs unchanged. Most rows were crashes (SIGFPE), silent
 * wrong results, half-applied updates or "cannot read properties of null" before.
 */
import { Tensor, crossEntropy, cuda, full, init, lora, mseLoss, nn, noGrad, optim, tensor, zeros, ones } from "../../lib";
import { thrownBy } from "../helpers/errors";

type Kind = "TypeError" | "RangeError" | "Error" | "ConfigError";
type Case = [name: string, fn: () => unknown, message: RegExp, kind: Kind];

const ids = (v: number[]): Tensor => tensor(v, { dtype: "int64" });

const CASES: Case[] = [
  // options objects
  ["tensor(data, null)", () => tensor([1], null as never), /options: expected an options object, got null/, "TypeError"],
  ["zeros(shape, 'float64')", () => zeros([1], "float64" as never), /options: expected an options object, got the string "float64"/, "TypeError"],
  ["to(null)", () => zeros([1]).to(null as never), /options: expected an options object, got null/, "TypeError"],
  [
    "backward(undefined, null)",
    () =>
      ones([1], { requiresGrad: true })
        .mul(2)
        .sum()
        .backward(undefined, null as never),
    /options: expected an options object, got null/,
    "TypeError",
  ],
  ["kaiming_uniform_(t, null)", () => init.kaiming_uniform_(zeros([2, 2]), null as never), /options: expected an options object, got null/, "TypeError"],
  ["crossEntropy(..., [])", () => crossEntropy(zeros([2, 3]), ids([0, 1]), [] as never), /options: expected an options object, got an array/, "TypeError"],
  ["Module.to(null)", () => new nn.Linear(2, 2).to(null as never), /options: expected an options object, got null/, "TypeError"],
  // values that do not fit the dtype
  ["full 1.5 as int64", () => full([2], 1.5, { dtype: "int64" }), /value: 1.5 is not an integer, but dtype is int64/, "RangeError"],
  ["full 300 as uint8", () => full([2], 300, { dtype: "uint8" }), /value: 300 is outside the uint8 range \[0, 255\]/, "RangeError"],
  ["full NaN as int32", () => full([2], NaN, { dtype: "int32" }), /value: NaN is not an integer/, "RangeError"],
  [
    "nesting deeper than 64",
    () => tensor(Array.from({ length: 70 }).reduce<unknown>((a) => [a], [1]) as never),
    /data: nested deeper than 64 levels/,
    "RangeError",
  ],
  ["reshape to 1e300", () => zeros([2]).reshape([1e300]), /shape\[0\]: expected an integer, got 1e\+300/, "TypeError"],
  // NaN hyper-parameters and tolerances
  ["allclose rtol NaN", () => zeros([1]).allclose(zeros([1]), { rtol: NaN }), /rtol: expected a finite number >= 0, got NaN/, "RangeError"],
  [
    "labelSmoothing NaN",
    () => crossEntropy(zeros([2, 3]), ids([0, 1]), { labelSmoothing: NaN }),
    /labelSmoothing: expected a number in \[0, 1\], got NaN/,
    "RangeError",
  ],
  ["mseLoss shapes differ", () => mseLoss(zeros([2, 3]), zeros([3])), /target: expected the shape of input \[2, 3\], got \[3\]/, "RangeError"],
  [
    "AdamW lr 1e300 on float32",
    () => {
      const p = ones([2], { requiresGrad: true });
      p.mul(p).sum().backward();
      new optim.AdamW([p], { lr: 1e300 }).step();
    },
    /lr 1e\+300 .* float32 arithmetic cannot represent .* nothing was changed/,
    "RangeError",
  ],
  [
    "SGD momentum NaN",
    () => new optim.SGD([ones([1], { requiresGrad: true })], { lr: 0.1, momentum: NaN }),
    /momentum: expected a finite number >= 0, got NaN/,
    "RangeError",
  ],
  // dtypes and shapes at layers
  [
    "Linear given int64 input",
    () => new nn.Linear(4, 2).forward(zeros([4], { dtype: "int64" })),
    /input: expected dtype float32 \(the layer weight's dtype\), got int64/,
    "TypeError",
  ],
  [
    "Linear given float64 input",
    () => new nn.Linear(4, 2).forward(zeros([1, 4], { dtype: "float64" })),
    /input: expected dtype float32 .* got float64/,
    "TypeError",
  ],
  [
    "Linear with a float64 bias, 1-D input (ATen would promote)",
    () => Object.assign(new nn.Linear(4, 2), { bias: zeros([2], { dtype: "float64" }) }).forward(zeros([4])),
    /bias: expected dtype float32 \(the layer weight's dtype\), got float64/,
    "TypeError",
  ],
  [
    "Linear with a 1-D weight (ATen would take a dot product)",
    () => Object.assign(new nn.Linear(4, 2, { bias: false }), { weight: zeros([4]) }).forward(zeros([3, 4])),
    /weight: expected a matrix \(out_features, in_features\), got shape \[4\]/,
    "RangeError",
  ],
  [
    "Linear given 3 features for 4",
    () => new nn.Linear(4, 2).forward(zeros([2, 3])),
    /input: expected last dimension 4 \(in_features\), got shape \[2, 3\]/,
    "RangeError",
  ],
  [
    "matmul float32 x float64",
    () => zeros([2, 2]).matmul(zeros([2, 2], { dtype: "float64" })),
    /other: expected dtype float32 \(the dtype of self\), got float64/,
    "TypeError",
  ],
  ["Embedding ids out of range", () => new nn.Embedding(4, 2).forward(ids([4])), /ids: token id 4 is out of range for an embedding of 4 rows/, "RangeError"],
  ["Embedding negative ids", () => new nn.Embedding(4, 2).forward(ids([-1])), /ids: token id -1 is out of range/, "RangeError"],
  ["Embedding float ids", () => new nn.Embedding(4, 2).forward(tensor([1])), /ids: expected token ids of dtype int64 or int32, got float32/, "TypeError"],
  cuda.isAvailable()
    ? [
        "Embedding on a CUDA device that does not exist",
        () => new nn.Embedding(4, 2, { device: "cuda:99" }),
        /device: device "cuda:99" does not exist/,
        "RangeError",
      ]
    : ["Embedding on cuda", () => new nn.Embedding(4, 2, { device: "cuda" }), /device: CUDA is not available/, "Error"],
  [
    "Module.to int64 with trainable params",
    () => new nn.Linear(2, 2).to({ dtype: "int64" }),
    /dtype: trainable parameters must stay floating-point, got int64/,
    "TypeError",
  ],
  ["Module.to unknown device", () => new nn.Linear(2, 2).to({ device: "tpu" as never }), /device: unknown device "tpu"/, "TypeError"],
  ["Linear 4.5 in-features", () => new nn.Linear(4.5, 2), /inFeatures: expected a positive integer, got 4.5/, "RangeError"],
  ["Dropout NaN", () => new nn.Dropout(NaN), /p: expected a probability in \[0, 1\], got NaN/, "RangeError"],
  // LoRA injection
  ["inject into a non-module", () => lora.injectAdapter({} as never, { targetModules: ["fc"] }), /model: expected an nn.Module, got an object/, "TypeError"],
  [
    "LoraConfig r NaN",
    () => lora.injectAdapter(new nn.Sequential(new nn.Linear(2, 2)), { targetModules: ["0"], r: NaN }),
    /LoraConfig.r: expected an integer >= 1, got NaN/,
    "ConfigError",
  ],
  [
    "LoraConfig alpha NaN",
    () => lora.injectAdapter(new nn.Sequential(new nn.Linear(2, 2)), { targetModules: ["0"], loraAlpha: NaN }),
    /LoraConfig.loraAlpha: expected a finite number > 0, got NaN/,
    "ConfigError",
  ],
  [
    "LoraConfig targets nothing",
    () => lora.injectAdapter(new nn.Sequential(new nn.ReLU()), { targetModules: ["0"] }),
    /LoraConfig.targetModules: \["0"\] matches no Linear\/Embedding module/,
    "ConfigError",
  ],
  [
    "LoRA forward, ids out of range",
    () => lora.injectAdapter(new nn.Sequential(new nn.Embedding(5, 2)), { targetModules: ["0"] }).forward(ids([5])),
    /ids: token id 5 is out of range/,
    "RangeError",
  ],
  [
    "merge with adapterNames string",
    () => lora.injectAdapter(new nn.Sequential(new nn.Linear(2, 2)), { targetModules: ["0"] }).merge({ adapterNames: "default" as never }),
    /adapterNames: expected an array of adapter names, got the string "default"/,
    "TypeError",
  ],
];

describe("bad input throws a typed, informative JS Error", () => {
  it.each(CASES.map((c) => [c[0], c] as const))("%s", (_name, [, fn, message, kind]) => {
    const caught = thrownBy(fn);
    expect(caught.name).toBe(kind);
    expect(caught.message).toMatch(message);
  });
});

describe("zero-element tensors", () => {
  // libtorch's orthogonal_ raised SIGFPE on these and kaiming_* threw "from is out of bounds";
  // PyTorch's Python init functions return them untouched.
  it.each([
    ["orthogonal_", (t: Tensor) => init.orthogonal_(t)],
    ["kaiming_uniform_", (t: Tensor) => init.kaiming_uniform_(t)],
    ["kaiming_normal_", (t: Tensor) => init.kaiming_normal_(t, { mode: "fan_out" })],
    ["xavier_uniform_", (t: Tensor) => init.xavier_uniform_(t)],
    ["xavier_normal_", (t: Tensor) => init.xavier_normal_(t)],
  ])("%s is a no-op on shapes [0, 3] and [3, 0]", (_name, fn) => {
    for (const shape of [
      [0, 3],
      [3, 0],
    ]) {
      const t = zeros(shape);
      expect(fn(t)).toBe(t);
      expect(t.shape).toEqual(shape);
    }
    // Arguments are still checked on an empty tensor.
    expect(() => init.kaiming_uniform_(zeros([0, 3]), { mode: "x" as never })).toThrow(/mode: expected "fan_in" or "fan_out"/);
  });
});

describe("a failed call changes nothing", () => {
  it("an optimizer step refused for an unrepresentable factor leaves every parameter and its state untouched", () => {
    const a = tensor([1, 2], { requiresGrad: true });
    const b = tensor([3, 4], { requiresGrad: true });
    a.mul(b).sum().backward();
    const opt = new optim.AdamW([a, b], { lr: 0.1 });
    opt.step();
    const before = [a.toBytes(), b.toBytes()];
    opt.lr = 1e39; // finite in float64, beyond float32
    expect(() => opt.step()).toThrow(/nothing was changed/);
    expect([a.toBytes(), b.toBytes()]).toEqual(before);
    // The same optimizer still works, and its second step matches a fresh run of two steps.
    opt.lr = 0.1;
    opt.step();
    const a2 = tensor([1, 2], { requiresGrad: true });
    const b2 = tensor([3, 4], { requiresGrad: true });
    a2.mul(b2).sum().backward();
    const ref = new optim.AdamW([a2, b2], { lr: 0.1 });
    ref.step();
    ref.step();
    expect(a.toBytes().equals(a2.toBytes()) && b.toBytes().equals(b2.toBytes())).toBe(true);
  });

  it("Module.to with a bad option moves no parameter", () => {
    const m = new nn.Sequential(new nn.Linear(2, 2), new nn.Linear(2, 2));
    const before = m.parameters();
    expect(() => m.to({ dtype: "float64", device: "tpu" as never })).toThrow(TypeError);
    expect(m.parameters().every((p, i) => p === before[i] && p.dtype === "float32")).toBe(true);
  });

  it("a refused LoRA config leaves the model without LoRA layers", () => {
    const m = new nn.Sequential(new nn.Linear(2, 2));
    const w = m.parameters()[0].toBytes();
    expect(() => lora.injectAdapter(m, { targetModules: ["0"], r: 0 })).toThrow(/LoraConfig.r/);
    expect(m.namedModules().map(([, x]) => x.constructor.name)).toEqual(["Sequential", "Linear"]);
    expect(noGrad(() => m.parameters()[0].toBytes()).equals(w)).toBe(true);
  });
});
