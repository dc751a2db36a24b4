/**
 * addWeightedAdapter without PyTorch: the combinations whose result has a closed form (linear
 * factors, full-rank SVD, TIES on sign-agreeing adapters, density 0 and 1), the rank rules, where
 * the new adapter lives, and every refusal by its exact message. Expectations are computed here
 * from the adapters' own factors with plain tensor ops.
 */
import { ConfigError, Tensor, init, lora, manualSeed, nn, noGrad } from "../../lib";
import { maxAbsDiff } from "../helpers/stats";

class Block extends nn.Module {
  fc = new nn.Linear(8, 6);
  override forward(x: Tensor): Tensor {
    return this.fc.forward(x);
  }
}

class Net extends nn.Module {
  block = new Block();
  head = new nn.Linear(6, 10);
  override forward(x: Tensor): Tensor {
    return this.head.forward(this.block.forward(x).tanh());
  }
}

const PATHS = ["block.fc", "head"];
const layerOf = (lm: lora.LoraModel, path: string) => lm.loraLayers().find(([p]) => p === path)![1];
const scaleOf = (lm: lora.LoraModel, path: string, name: string): number => layerOf(lm, path).settings(name)!.scale;

/** Adapters a (r 4, α 8: s 2) and b (r 4, α 2: s 0.5) on both layers, c (r 2, α 6: s 3) on head only; random factors. */
function model(seed = 5): lora.LoraModel<Net> {
  manualSeed(seed);
  const lm = lora.injectAdapter(new Net(), { r: 4, loraAlpha: 8, targetModules: [...PATHS] }, "a");
  lm.addAdapter("b", { r: 4, loraAlpha: 2, targetModules: [...PATHS] });
  lm.addAdapter("c", { r: 2, loraAlpha: 6, targetModules: ["head"] });
  noGrad(() => {
    for (const [, layer] of lm.loraLayers()) for (const n of layer.adapterNames) for (const f of layer.factors(n)) init.normal_(f, 0, 0.5);
  });
  return lm;
}

/** PEFT's factor weights: ±√|w·s| on A (the sign of w·s), √|w·s| on B. */
const signedRoot = (x: number): number => Math.sign(x) * Math.sqrt(Math.abs(x));

/** The linear combination of the factors, written out from the adapters' own A and B. */
function linearFactors(lm: lora.LoraModel, path: string, names: string[], weights: number[]): [Tensor, Tensor] {
  const layer = layerOf(lm, path);
  let A: Tensor | null = null;
  let B: Tensor | null = null;
  names.forEach((n, i) => {
    const ws = weights[i] * scaleOf(lm, path, n);
    const [a, b] = layer.factors(n);
    const termA = a.detach().mul(signedRoot(ws));
    const termB = b.detach().mul(Math.sqrt(Math.abs(ws)));
    A = A ? A.add(termA) : termA;
    B = B ? B.add(termB) : termB;
  });
  return [A!, B!];
}

/** Σ wᵢ·sᵢ·ΔWᵢ over the adapters the layer holds: the merged delta of the `svd` path (each scaling applied twice, as PEFT does). */
function svdDelta(lm: lora.LoraModel, path: string, names: string[], weights: number[]): Tensor {
  const layer = layerOf(lm, path);
  let d: Tensor | null = null;
  names.forEach((n, i) => {
    if (!layer.adapterNames.includes(n)) return;
    const term = layer.deltaWeight(n).mul(weights[i] * scaleOf(lm, path, n));
    d = d ? d.add(term) : term;
  });
  return d!;
}

describe("addWeightedAdapter: closed-form results", () => {
  test("one adapter is combined linearly whatever the type: A·(±√|w·s|), B·√|w·s|, its own rank, no density needed", () => {
    for (const options of [{}, { combinationType: "ties" as const }, { combinationType: "svd" as const, svdRank: 2 }]) {
      const lm = model();
      lm.addWeightedAdapter(["a"], [-2], "mix", options);
      expect(lm.peftConfig.mix.r).toBe(4);
      for (const p of PATHS) {
        // w·s = −2·2 = −4: A ← −2·A, B ← 2·B.
        const [A, B] = layerOf(lm, p).factors("mix");
        const [a, b] = layerOf(lm, p).factors("a");
        expect(maxAbsDiff(A, a.mul(-2))).toBeLessThan(1e-6);
        expect(maxAbsDiff(B, b.mul(2))).toBeLessThan(1e-6);
      }
    }
  });

  test("linear, and magnitude_prune / dare_linear at density 1: A = Σ ±√|wᵢsᵢ|·Aᵢ, B = Σ √|wᵢsᵢ|·Bᵢ", () => {
    for (const options of [
      { combinationType: "linear" as const },
      { combinationType: "magnitude_prune" as const, density: 1 },
      { combinationType: "dare_linear" as const, density: 1 },
    ]) {
      const lm = model();
      const weights = [0.8, -0.5];
      lm.addWeightedAdapter(["a", "b"], weights, "mix", options);
      expect(lm.peftConfig.mix.r).toBe(4);
      for (const p of PATHS) {
        const [A, B] = layerOf(lm, p).factors("mix");
        const [eA, eB] = linearFactors(lm, p, ["a", "b"], weights);
        expect(maxAbsDiff(A, eA)).toBeLessThan(1e-5);
        expect(maxAbsDiff(B, eB)).toBeLessThan(1e-5);
      }
    }
  });

  test("density 0 keeps nothing: dare_linear and magnitude_prune give zero factors", () => {
    for (const combinationType of ["dare_linear", "magnitude_prune"] as const) {
      const lm = model();
      lm.addWeightedAdapter(["a", "b"], [0.8, -0.5], "mix", { combinationType, density: 0 });
      for (const p of PATHS) for (const f of layerOf(lm, p).factors("mix")) expect(f.abs().max().item()).toBe(0);
    }
  });

  test("svd family at full rank: B·A = Σ wᵢsᵢ·ΔWᵢ exactly (svdRank = min(out, in) is allowed)", () => {
    for (const options of [
      { combinationType: "svd" as const },
      { combinationType: "svd" as const, svdFullMatrices: false },
      { combinationType: "magnitude_prune_svd" as const, density: 1 },
      { combinationType: "dare_linear_svd" as const, density: 1 },
    ]) {
      const lm = model();
      const weights = [0.7, -1.2];
      // head holds a (r 4) and c (r 2): the merged delta has rank ≤ 6 = min(10, 6), so rank 6 loses nothing.
      lm.addWeightedAdapter(["a", "c"], weights, "mix", { ...options, svdRank: 6 });
      expect(lm.peftConfig.mix.r).toBe(6);
      for (const p of PATHS) {
        const expected = svdDelta(lm, p, ["a", "c"], weights);
        expect(maxAbsDiff(layerOf(lm, p).deltaWeight("mix"), expected)).toBeLessThan(1e-4 * expected.abs().max().item());
      }
    }
  });

  test("svd without svdRank takes the largest rank of the adapters", () => {
    const lm = model();
    // c weighs 0, so the merged delta is a's alone (rank 4) and the rank-4 result is exact.
    lm.addWeightedAdapter(["c", "a"], [0, 1.5], "mix");
    expect(lm.peftConfig.mix.r).toBe(4);
    for (const p of PATHS) {
      const expected = svdDelta(lm, p, ["a"], [1.5]);
      expect(maxAbsDiff(layerOf(lm, p).deltaWeight("mix"), expected)).toBeLessThan(1e-4 * expected.abs().max().item());
    }
  });

  test("ties_svd / dare_ties_svd at density 1 on sign-agreeing adapters: every sign is elected, so B·A is the mean Σ wᵢsᵢΔWᵢ / 2", () => {
    for (const [combinationType, majoritySignMethod] of [
      ["ties_svd", "total"],
      ["ties_svd", "frequency"],
      ["dare_ties_svd", "total"],
    ] as const) {
      const lm = model();
      // b gets a's factors, so ΔW_b = (s_b / s_a)·ΔW_a has a's signs everywhere.
      noGrad(() => {
        for (const p of PATHS) {
          const layer = layerOf(lm, p);
          const [a, b] = layer.factors("a");
          const [ta, tb] = layer.factors("b");
          ta.copy_(a);
          tb.copy_(b);
        }
      });
      const weights = [0.9, 2];
      lm.addWeightedAdapter(["a", "b"], weights, "mix", { combinationType, density: 1, majoritySignMethod, svdRank: 4 });
      for (const p of PATHS) {
        const expected = svdDelta(lm, p, ["a", "b"], weights).div(2);
        expect(maxAbsDiff(layerOf(lm, p).deltaWeight("mix"), expected)).toBeLessThan(1e-4 * expected.abs().max().item());
      }
    }
  });

  test("svdRank 1 is accepted and gives a rank-1 adapter", () => {
    const lm = model();
    lm.addWeightedAdapter(["a", "b"], [1, 1], "mix", { svdRank: 1 });
    expect(lm.peftConfig.mix.r).toBe(1);
    expect(layerOf(lm, "head").factors("mix")[0].shape).toEqual([1, 6]);
  });

  test("svdClamp 0 and 1 are accepted", () => {
    const lm = model();
    lm.addWeightedAdapter(["a", "b"], [1, 1], "low", { svdClamp: 0 });
    lm.addWeightedAdapter(["a", "b"], [1, 1], "high", { svdClamp: 1 });
    expect(lm.adapterNames).toEqual(["a", "b", "c", "low", "high"]);
  });

  test("the new adapter lives exactly on the layers (nested paths included) that hold a combined adapter, with the plain init", () => {
    const lm = model();
    lm.addWeightedAdapter(["a", "b"], [1, 0.5], "both", { combinationType: "cat" });
    expect(PATHS.map((p) => layerOf(lm, p).adapterNames.includes("both"))).toEqual([true, true]);
    expect(lm.peftConfig.both.initLoraWeights).toBe(true);
    expect(lm.peftConfig.both.useRslora).toBe(false);
    lm.addWeightedAdapter(["c"], [1], "onlyHead");
    expect(PATHS.map((p) => layerOf(lm, p).adapterNames.includes("onlyHead"))).toEqual([false, true]);
  });
});

describe("addWeightedAdapter: rank rules", () => {
  for (const combinationType of ["linear", "ties", "dare_linear", "dare_ties", "magnitude_prune"] as const) {
    test(`${combinationType} needs adapters of one rank`, () => {
      const lm = model();
      expect(() => lm.addWeightedAdapter(["a", "c"], [1, 1], "m", { combinationType, density: 0.5 })).toThrow(
        new ConfigError(`adapters: combinationType "${combinationType}" needs adapters of one rank, got ranks 4, 2`),
      );
      expect(lm.adapterNames).toEqual(["a", "b", "c"]);
    });
  }

  test("an adapter's rank is its largest rank_pattern rank: cat sums those, linear checks every layer", () => {
    const lm = model();
    lm.addAdapter("d", { r: 2, loraAlpha: 2, rankPattern: { head: 4 }, targetModules: [...PATHS] });
    lm.addWeightedAdapter(["a", "d"], [1, 1], "joined", { combinationType: "cat" });
    expect(lm.peftConfig.joined.r).toBe(8);
    // Both count as rank 4, but block.fc holds d at rank 2.
    expect(() => lm.addWeightedAdapter(["a", "d"], [1, 1], "m", { combinationType: "linear" })).toThrow(
      new ConfigError(`adapters: combinationType "linear" needs one rank in every layer, but block.fc holds ranks 4, 2`),
    );
    // head is checked after block.fc: the factors planned for block.fc are dropped, nothing is added.
    lm.addAdapter("e", { r: 4, loraAlpha: 4, rankPattern: { head: 2 }, targetModules: [...PATHS] });
    expect(() => lm.addWeightedAdapter(["a", "e"], [1, 1], "m", { combinationType: "linear" })).toThrow(
      new ConfigError(`adapters: combinationType "linear" needs one rank in every layer, but head holds ranks 4, 2`),
    );
    expect(lm.adapterNames).toEqual(["a", "b", "c", "d", "joined", "e"]);
  });
});

describe("addWeightedAdapter: refusals", () => {
  test("every type that prunes needs a density, named with the type", () => {
    for (const combinationType of [
      "ties",
      "ties_svd",
      "dare_linear",
      "dare_ties",
      "dare_linear_svd",
      "dare_ties_svd",
      "magnitude_prune",
      "magnitude_prune_svd",
    ] as const) {
      const lm = model();
      expect(() => lm.addWeightedAdapter(["a", "b"], [1, 1], "m", { combinationType })).toThrow(
        new ConfigError(`density: combinationType "${combinationType}" needs a density in [0, 1]`),
      );
    }
  });

  test("every PEFT type is accepted", () => {
    for (const combinationType of ["ties_svd", "dare_linear_svd", "dare_ties_svd", "magnitude_prune", "magnitude_prune_svd"] as const) {
      const lm = model();
      lm.addWeightedAdapter(["a", "b"], [1, 1], "m", { combinationType, density: 0.5 });
      expect(lm.adapterNames).toContain("m");
    }
  });

  test("bad arguments are refused with the argument, what was expected and what was given, and change nothing", () => {
    const lm = model();
    const cases: [() => void, Error][] = [
      [() => lm.addWeightedAdapter([], [], "m"), new TypeError("adapters: expected a non-empty list of adapter names, got an array of length 0")],
      [() => lm.addWeightedAdapter("a" as never, [1], "m"), new TypeError('adapters: expected a non-empty list of adapter names, got the string "a"')],
      [() => lm.addWeightedAdapter(["a", "a"], [1, 1], "m"), new ConfigError('adapters: each adapter may appear once, got ["a","a"]')],
      [() => lm.addWeightedAdapter(["a", "b"], [1, NaN], "m"), new TypeError("weights: expected 2 finite numbers (one per adapter), got an array of length 2")],
      [
        () => lm.addWeightedAdapter(["a", "b"], [Infinity, 1], "m"),
        new TypeError("weights: expected 2 finite numbers (one per adapter), got an array of length 2"),
      ],
      // The name is checked before the options.
      [
        () => lm.addWeightedAdapter(["a", "b"], [1, 1], "b", { density: 2 }),
        new ConfigError('adapterName: an adapter called "b" already exists; deleteAdapter("b") first'),
      ],
      [() => lm.addWeightedAdapter(["a", "b"], [1, 1], "m", 5 as never), new TypeError("options: expected an options object, got 5")],
      [
        () => lm.addWeightedAdapter(["a", "b"], [1, 1], "m", { combinationType: "ties", density: 0.5, majoritySignMethod: "mean" as never }),
        new ConfigError('majoritySignMethod: expected "total" or "frequency", got the string "mean"'),
      ],
      [
        () => lm.addWeightedAdapter(["a", "b"], [1, 1], "m", { combinationType: "ties", density: -0.1 }),
        new ConfigError("density: expected a number in [0, 1], got -0.1"),
      ],
      [
        () => lm.addWeightedAdapter(["a", "b"], [1, 1], "m", { combinationType: "ties", density: 1.5 }),
        new ConfigError("density: expected a number in [0, 1], got 1.5"),
      ],
      [
        () => lm.addWeightedAdapter(["a", "b"], [1, 1], "m", { combinationType: "ties", density: "0.5" as never }),
        new ConfigError('density: expected a number in [0, 1], got the string "0.5"'),
      ],
      [() => lm.addWeightedAdapter(["a", "b"], [1, 1], "m", { svdClamp: -0.1 }), new ConfigError("svdClamp: expected a quantile in [0, 1], got -0.1")],
      [() => lm.addWeightedAdapter(["a", "b"], [1, 1], "m", { svdClamp: 1.01 }), new ConfigError("svdClamp: expected a quantile in [0, 1], got 1.01")],
      [() => lm.addWeightedAdapter(["a", "b"], [1, 1], "m", { svdClamp: NaN }), new ConfigError("svdClamp: expected a quantile in [0, 1], got NaN")],
      [
        () => lm.addWeightedAdapter(["a", "b"], [1, 1], "m", { svdClamp: "1" as never }),
        new ConfigError('svdClamp: expected a quantile in [0, 1], got the string "1"'),
      ],
      [() => lm.addWeightedAdapter(["a", "b"], [1, 1], "m", { svdRank: 0 }), new ConfigError("svdRank: expected an integer >= 1, got 0")],
      [() => lm.addWeightedAdapter(["a", "b"], [1, 1], "m", { svdRank: 2.5 }), new ConfigError("svdRank: expected an integer >= 1, got 2.5")],
      [
        () => lm.addWeightedAdapter(["a", "b"], [1, 1], "m", { svdRank: "2" as never }),
        new ConfigError('svdRank: expected an integer >= 1, got the string "2"'),
      ],
      [() => lm.addWeightedAdapter(["a", "b"], [1, 1], "m", { svdRank: 7 }), new ConfigError("svdRank: 7 exceeds min(out, in) = 6 of block.fc")],
      [
        () => lm.addWeightedAdapter(["a", "b"], [1, 1], "m", { svdFullMatrices: "yes" as never }),
        new TypeError('svdFullMatrices: expected a boolean, got the string "yes"'),
      ],
    ];
    for (const [call, error] of cases) {
      let thrown: unknown;
      try {
        call();
      } catch (e) {
        thrown = e;
      }
      expect(thrown).toBeInstanceOf(error.constructor);
      expect((thrown as Error).message).toBe(error.message);
      expect(lm.adapterNames).toEqual(["a", "b", "c"]);
    }
  });

  test("DoRA adapters are refused, all of them named", () => {
    manualSeed(3);
    const lm = lora.injectAdapter(new Net(), { r: 2, useDora: true, targetModules: [...PATHS] }, "p");
    lm.addAdapter("q", { r: 2, useDora: true, targetModules: [...PATHS] });
    expect(() => lm.addWeightedAdapter(["p", "q"], [1, 1], "m", { combinationType: "cat" })).toThrow(
      new ConfigError("adapters: DoRA adapters (p, q) cannot be combined (their magnitude vectors have no weighted sum)"),
    );
    expect(lm.adapterNames).toEqual(["p", "q"]);
  });
});
