/**
 * torch::nn::init bindings: distribution parameters checked with plain-JS statistics over
 * 10⁵–10⁶ samples, bounds computed by hand from PyTorch's formulas, and seeding checked on
 * raw bytes.
 */
import { Dtype, Tensor, empty, init, manualSeed, noGrad, zeros } from "../../lib";
import { meanStd } from "../helpers/stats";

describe("normal_", () => {
  it.each([
    [0, 1],
    [0.5, 2],
    [-3, 0.25],
  ])("mean %p std %p over 1e6 samples", (mean, std) => {
    manualSeed(1);
    const t = init.normal_(empty([1000, 1000]), mean, std);
    const s = meanStd(t);
    expect(Math.abs(s.mean - mean)).toBeLessThan(0.01);
    expect(Math.abs(s.std - std)).toBeLessThan(0.01);
  });

  it("returns the same tensor, filled in place", () => {
    const t = zeros([10]);
    expect(init.normal_(t)).toBe(t);
    expect(t.toList().some((v) => v !== 0)).toBe(true);
  });
});

describe("uniform_, constant_, zeros_, ones_", () => {
  it("uniform_ stays in [a, b) and has the uniform mean and std", () => {
    manualSeed(2);
    const s = meanStd(init.uniform_(empty([1_000_000]), -1, 3));
    expect(s.min).toBeGreaterThanOrEqual(-1);
    expect(s.max).toBeLessThan(3);
    expect(Math.abs(s.mean - 1)).toBeLessThan(0.01);
    expect(Math.abs(s.std - 4 / Math.sqrt(12))).toBeLessThan(0.01);
  });

  it("zeros_ writes exact zeros (all bytes 0) over random data", () => {
    const t = init.zeros_(init.normal_(empty([257, 3])));
    expect(t.toBytes().every((b) => b === 0)).toBe(true);
  });

  it("ones_ and constant_ fill every element", () => {
    expect(init.ones_(empty([5])).toList()).toEqual([1, 1, 1, 1, 1]);
    expect(init.constant_(empty([2, 2], { dtype: "float64" }), -0.125).toList()).toEqual([-0.125, -0.125, -0.125, -0.125]);
  });
});

describe("kaiming_uniform_", () => {
  it("with a = √5 (the LoRA A default) samples U(-b, b), b = sqrt(6 / ((1 + a²) · fan_in))", () => {
    const a = Math.sqrt(5);
    const fanIn = 500;
    const bound = Math.sqrt(6 / ((1 + a * a) * fanIn));
    manualSeed(3);
    const s = meanStd(init.kaiming_uniform_(empty([1000, fanIn]), { a }));
    expect(s.max).toBeLessThanOrEqual(bound);
    expect(s.min).toBeGreaterThanOrEqual(-bound);
    // 5·10⁵ uniform samples come within 10⁻³·bound of both ends with overwhelming probability.
    expect(s.max).toBeGreaterThan(bound * 0.999);
    expect(s.min).toBeLessThan(-bound * 0.999);
    expect(Math.abs(s.std - bound / Math.sqrt(3))).toBeLessThan(bound * 0.01);
  });

  it("fan_in counts the receptive field of conv-shaped weights; fan_out uses dim 0", () => {
    manualSeed(4);
    // shape (out=64, in=8, 5, 5): fan_in = 8·25 = 200, fan_out = 64·25 = 1600; relu gain √2.
    const fi = meanStd(init.kaiming_uniform_(empty([64, 8, 5, 5]), { nonlinearity: "relu" }));
    expect(fi.max).toBeLessThanOrEqual(Math.sqrt(2) * Math.sqrt(3 / 200));
    expect(fi.max).toBeGreaterThan(0.99 * Math.sqrt(2) * Math.sqrt(3 / 200));
    const fo = meanStd(init.kaiming_uniform_(empty([64, 8, 5, 5]), { mode: "fan_out", nonlinearity: "relu" }));
    expect(fo.max).toBeLessThanOrEqual(Math.sqrt(2) * Math.sqrt(3 / 1600));
    expect(fo.max).toBeGreaterThan(0.99 * Math.sqrt(2) * Math.sqrt(3 / 1600));
  });
});

describe("normal-distributed initializers have the documented std", () => {
  const rel = (got: number, want: number) => Math.abs(got - want) / want;
  beforeEach(() => manualSeed(5));

  it("kaiming_normal_: gain/√fan for leaky_relu(a), relu, tanh, linear", () => {
    const shape = [400, 1000]; // fan_in 1000, fan_out 400
    const cases: [init.KaimingOptions, number][] = [
      [{}, Math.sqrt(2) / Math.sqrt(1000)],
      [{ a: 0.2 }, Math.sqrt(2 / 1.04) / Math.sqrt(1000)],
      [{ nonlinearity: "relu", mode: "fan_out" }, Math.sqrt(2) / Math.sqrt(400)],
      [{ nonlinearity: "tanh" }, 5 / 3 / Math.sqrt(1000)],
      [{ nonlinearity: "linear" }, 1 / Math.sqrt(1000)],
    ];
    for (const [options, std] of cases) {
      const s = meanStd(init.kaiming_normal_(empty(shape), options));
      expect(rel(s.std, std)).toBeLessThan(0.01);
      expect(Math.abs(s.mean)).toBeLessThan(std * 0.01);
    }
  });

  it("xavier_normal_: gain·sqrt(2/(fan_in+fan_out)); xavier_uniform_ bound gain·sqrt(6/(fan_in+fan_out))", () => {
    const s = meanStd(init.xavier_normal_(empty([300, 700]), 2));
    expect(rel(s.std, 2 * Math.sqrt(2 / 1000))).toBeLessThan(0.01);
    const u = meanStd(init.xavier_uniform_(empty([300, 700]), 0.5));
    const bound = 0.5 * Math.sqrt(6 / 1000);
    expect(u.max).toBeLessThanOrEqual(bound);
    expect(u.min).toBeGreaterThanOrEqual(-bound);
    expect(u.max).toBeGreaterThan(bound * 0.999);
  });
});

describe("orthogonal_", () => {
  /** max |M - c·I| over a square float64 matrix given as a Tensor. */
  function maxDevFromScaledIdentity(m: Tensor, c: number): number {
    const n = m.shape[0];
    const v = m.toArray() as Float64Array;
    let worst = 0;
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) worst = Math.max(worst, Math.abs(v[i * n + j] - (i === j ? c : 0)));
    return worst;
  }

  // libtorch's C++ orthogonal_ draws its Gaussian matrix in the default dtype (float32) and
  // copies Q into the tensor, so float64 tensors get float32-accurate orthogonality.
  const F32_ORTHO = 1e-5;

  it("tall matrices have orthonormal columns (QᵀQ = I), wide ones orthonormal rows (QQᵀ = I)", () => {
    manualSeed(6);
    const tall = init.orthogonal_(empty([80, 30], { dtype: "float64" }));
    expect(maxDevFromScaledIdentity(tall.t().matmul(tall), 1)).toBeLessThan(F32_ORTHO);
    const wide = init.orthogonal_(empty([30, 80], { dtype: "float64" }));
    expect(maxDevFromScaledIdentity(wide.matmul(wide.t()), 1)).toBeLessThan(F32_ORTHO);
    const sq = init.orthogonal_(empty([40, 40]));
    expect(maxDevFromScaledIdentity(sq.t().matmul(sq).to("float64"), 1)).toBeLessThan(1e-5);
  });

  it("gain scales Q: QᵀQ = gain²·I", () => {
    const q = init.orthogonal_(empty([20, 10], { dtype: "float64" }), 3);
    expect(maxDevFromScaledIdentity(q.t().matmul(q), 9)).toBeLessThan(9 * F32_ORTHO);
  });
});

describe("orthogonal_ in reduced precision", () => {
  it.each(["float16", "bfloat16"] as Dtype[])("%s: QᵀQ ≈ I within the format's precision", (dtype) => {
    const q = init.orthogonal_(empty([24, 8], { dtype })).to("float64");
    const g = q.t().matmul(q).toArray() as Float64Array;
    const tol = dtype === "float16" ? 5e-3 : 4e-2;
    for (let i = 0; i < 8; i++) for (let j = 0; j < 8; j++) expect(Math.abs(g[i * 8 + j] - (i === j ? 1 : 0))).toBeLessThan(tol);
  });
});

describe("seeding", () => {
  const draw = () => {
    const a = init.kaiming_uniform_(empty([16, 32]), { a: Math.sqrt(5) }).toBytes();
    const b = init.normal_(empty([100]), 0, 1).toBytes();
    const c = init.orthogonal_(empty([8, 8])).toBytes();
    return Buffer.concat([a, b, c]);
  };

  it("the same manualSeed gives identical bytes; another seed gives different bytes", () => {
    manualSeed(1234);
    const first = draw();
    manualSeed(1234);
    const second = draw();
    manualSeed(1235);
    const third = draw();
    expect(first.equals(second)).toBe(true);
    expect(first.equals(third)).toBe(false);
  });
});

describe("initializers work on leaves that require grad (without recording)", () => {
  it("normal_ on a requiresGrad leaf keeps it a leaf", () => {
    const w = empty([4, 4], { requiresGrad: true });
    init.kaiming_uniform_(w, { a: Math.sqrt(5) });
    expect(w.isLeaf).toBe(true);
    expect(w.requiresGrad).toBe(true);
    expect(noGrad(() => w.abs().sum().item())).toBeGreaterThan(0);
  });
});

describe("reduced and double precision", () => {
  const dtypes: Dtype[] = ["float64", "float16", "bfloat16"];
  it.each(dtypes)("%s: normal_, uniform_, kaiming_uniform_, xavier_normal_, zeros_ give the right statistics", (dtype) => {
    manualSeed(7);
    const n = meanStd(init.normal_(empty([400, 500], { dtype }), 0.5, 2));
    expect(Math.abs(n.mean - 0.5)).toBeLessThan(0.02);
    expect(Math.abs(n.std - 2)).toBeLessThan(0.02);
    const bound = Math.sqrt(6 / (6 * 500));
    const k = meanStd(init.kaiming_uniform_(empty([400, 500], { dtype }), { a: Math.sqrt(5) }));
    // Rounding to the narrow format can land exactly on the bound, never beyond its rounding.
    const slack = dtype === "float64" ? 0 : bound * 2 ** -7;
    expect(k.max).toBeLessThanOrEqual(bound + slack);
    expect(k.min).toBeGreaterThanOrEqual(-bound - slack);
    expect(k.max).toBeGreaterThan(bound * 0.99);
    const x = meanStd(init.xavier_normal_(empty([400, 500], { dtype })));
    expect(Math.abs(x.std - Math.sqrt(2 / 900)) / Math.sqrt(2 / 900)).toBeLessThan(0.02);
    const z = init.zeros_(init.normal_(empty([33], { dtype })));
    expect(z.toBytes().every((b) => b === 0)).toBe(true);
    expect(z.dtype).toBe(dtype);
  });
});

describe("withoutInit", () => {
  it("makes every initializer leave its tensor as it is, nested, and ends even when its callback throws", () => {
    const t = zeros([64]);
    const result = init.withoutInit(() => {
      init.normal_(t);
      init.withoutInit(() => init.ones_(t));
      init.kaiming_uniform_(t.reshape([8, 8]));
      init.orthogonal_(t.reshape([8, 8]));
      return "built";
    });
    expect(result).toBe("built");
    expect(t.toList().every((v) => v === 0)).toBe(true);
    expect(() =>
      init.withoutInit(() => {
        throw new Error("failed build");
      }),
    ).toThrow("failed build");
    init.ones_(t); // initializers work again afterwards
    expect(t.toList().every((v) => v === 1)).toBe(true);
  });
});
