/**
 * Weight-aware inits without PyTorch: which strings name them, which rewrite the base weight,
 * the rank limit at its edge, messages without a layer, and exact PiSSA told apart from the
 * randomized one by a property only an exact SVD has (the residual is orthogonal to the factors).
 */
import { ConfigError, Tensor, lora, manualSeed, nn } from "../../lib";

const maxAbs = (t: Tensor): number => t.to({ dtype: "float64" }).abs().max().item();

/** A module holding one Linear `fc` (in 8, out 16). */
class Holder extends nn.Module {
  fc = new nn.Linear(8, 16);
  override forward(x: Tensor): Tensor {
    return this.fc.forward(x);
  }
}

const layerOf = (lm: lora.LoraModel): lora.LoraLinear => lm.loraLayers().find(([p]) => p === "fc")![1] as lora.LoraLinear;

describe("weight-aware init names", () => {
  test("isWeightAwareInit: the four inits, pissa_niter_N with any number of digits, nothing with text around it", () => {
    for (const v of ["pissa", "olora", "orthogonal", "pissa_niter_0", "pissa_niter_4", "pissa_niter_12"])
      expect([v, lora.isWeightAwareInit(v)]).toEqual([v, true]);
    for (const v of [
      "xpissa_niter_4",
      "pissa_niter_4x",
      "pissa_niter_",
      "pissa_niter_-1",
      "gaussian",
      true,
      false,
      undefined,
      // Arrays and objects whose string form is a valid name are still not names.
      ["pissa_niter_4"],
      { toString: () => "pissa_niter_4" },
    ])
      expect([v, lora.isWeightAwareInit(v)]).toEqual([v, false]);
  });

  test("rewritesBaseWeight: PiSSA (exact or randomized) and OLoRA replace W by a residual; orthogonal and the plain inits do not", () => {
    for (const v of ["pissa", "pissa_niter_3", "olora"]) expect([v, lora.rewritesBaseWeight(v)]).toEqual([v, true]);
    for (const v of ["orthogonal", "gaussian", "", true, false, undefined, 5, ["pissa"]]) expect([v, lora.rewritesBaseWeight(v)]).toEqual([v, false]);
  });

  test("a two-digit pissa_niter_N is accepted by injectAdapter, and text around the name is refused", () => {
    manualSeed(2);
    const lm = lora.injectAdapter(new Holder(), { r: 2, targetModules: ["fc"], initLoraWeights: "pissa_niter_12" });
    expect(lm.peftConfig.default.initLoraWeights).toBe("pissa_niter_12");
    expect(() => lora.injectAdapter(new Holder(), { r: 2, targetModules: ["fc"], initLoraWeights: "xpissa_niter_4" as never })).toThrow(ConfigError);
  });
});

describe("checkWeightAwareInit", () => {
  test("r = min(out, in) is allowed; one more is refused", () => {
    expect(() => lora.checkWeightAwareInit("olora", "fc", "linear", [16, 8], 8)).not.toThrow();
    expect(() => lora.checkWeightAwareInit("pissa", "fc", "linear", [16, 8], 9)).toThrow(
      new ConfigError('LoraConfig.r: "pissa" init needs r <= min(out, in) = 8, got 9 (layer fc)'),
    );
  });

  test("without a path the message names no layer", () => {
    expect(() => lora.checkWeightAwareInit("orthogonal", "", "linear", [8, 8], 3)).toThrow(
      new ConfigError('LoraConfig.r: "orthogonal" init needs an even rank, got 3'),
    );
    expect(() => lora.checkWeightAwareInit("olora", "", "linear", [4, 6], 5)).toThrow(
      new ConfigError('LoraConfig.r: "olora" init needs r <= min(out, in) = 4, got 5'),
    );
  });

  for (const init of ["pissa", "olora"] as const) {
    test(`${init} at full rank (r = min(out, in), α = r): s·B·A is all of W and the residual is zero`, () => {
      manualSeed(4);
      const model = new Holder();
      const W = model.fc.weight.clone();
      const lm = lora.injectAdapter(model, { r: 8, loraAlpha: 8, targetModules: ["fc"], initLoraWeights: init });
      const layer = layerOf(lm);
      const [A, B] = layer.factors("default");
      expect(maxAbs(layer.base_layer.weight)).toBeLessThan(1e-5);
      expect(maxAbs(B.detach().matmul(A.detach()).sub(W))).toBeLessThan(1e-5);
    });
  }
});

describe("exact PiSSA", () => {
  test("\"pissa\" uses the exact SVD: the residual is orthogonal to A's rows and B's columns (a randomized SVD is not)", () => {
    const residualLeaks = (init: "pissa" | "pissa_niter_1"): number => {
      manualSeed(6);
      const lm = lora.injectAdapter(new Holder(), { r: 3, loraAlpha: 3, targetModules: ["fc"], initLoraWeights: init });
      const layer = layerOf(lm);
      const [A, B] = layer.factors("default");
      const R = layer.base_layer.weight.detach();
      // Exact: W = U S Vhᵀ, A = √S_r·Vh_r, B = U_r·√S_r, R = W − B·A, so R·Aᵀ = 0 and Bᵀ·R = 0.
      const leak = Math.max(maxAbs(R.matmul(A.detach().t())), maxAbs(B.detach().t().matmul(R)));
      return leak / maxAbs(R);
    };
    expect(residualLeaks("pissa")).toBeLessThan(1e-4);
    // The same property fails for one power iteration of the randomized SVD, so the test tells them apart.
    expect(residualLeaks("pissa_niter_1")).toBeGreaterThan(1e-3);
  });
});
