import { lora, manualSeed, nn } from "../../lib";
import { stats } from "../helpers/models";

function embeddingLayer(config: Partial<lora.LoraConfig>, paddingIdx: number | null = null): lora.LoraEmbedding {
  const model = new nn.Sequential(new nn.Embedding(2000, 16, { paddingIdx }));
  lora.injectAdapter(model, { r: 16, loraAlpha: 16, targetModules: ["0"], ...config });
  return model.at(0) as lora.LoraEmbedding;
}

function linearLayer(config: Partial<lora.LoraConfig>, inFeatures = 512): lora.LoraLinear {
  const model = new nn.Sequential(new nn.Linear(inFeatures, 64));
  lora.injectAdapter(model, { r: 8, loraAlpha: 8, targetModules: ["0"], ...config });
  return model.at(0) as lora.LoraLinear;
}

const allZero = (t: { toList(): number[] }) => t.toList().every((v) => v === 0);

describe("embedding init", () => {
  test.each([1, 0.1, 0.01])("default a-normal: A ~ N(0, %p) (32000 samples), B exactly zero", (std) => {
    manualSeed(21);
    const [A, B] = embeddingLayer(std === 1 ? {} : { embeddingInitStd: std }).factors("default");
    expect(A.shape).toEqual([16, 2000]);
    expect(B.shape).toEqual([16, 16]);
    const s = stats(A);
    // Standard error of the mean is std/√32000 ≈ 0.0056·std: 5 standard errors of slack.
    expect(Math.abs(s.mean)).toBeLessThan(0.03 * std);
    expect(Math.abs(s.std - std)).toBeLessThan(0.02 * std);
    expect(allZero(B)).toBe(true);
  });

  test("b-normal (PEFT's scheme): A exactly zero, B ~ N(0, std)", () => {
    manualSeed(22);
    const model = new nn.Sequential(new nn.Embedding(100, 400));
    lora.injectAdapter(model, { r: 40, loraAlpha: 16, targetModules: ["0"], embeddingInit: "b-normal", embeddingInitStd: 0.5 });
    const [A, B] = (model.at(0) as lora.LoraEmbedding).factors("default");
    expect(allZero(A)).toBe(true);
    const s = stats(B); // 16000 samples
    expect(Math.abs(s.mean)).toBeLessThan(0.02);
    expect(Math.abs(s.std - 0.5)).toBeLessThan(0.01);
  });

  test("a-normal zeroes A's padding column, and only that column", () => {
    manualSeed(23);
    const [A] = embeddingLayer({}, 7).factors("default");
    const values = A.toArray();
    for (let k = 0; k < 16; k++) {
      expect(values[k * 2000 + 7]).toBe(0);
      expect(values[k * 2000 + 8]).not.toBe(0);
    }
  });

  test("the same seed gives identical factors; another seed different ones", () => {
    manualSeed(5);
    const a = embeddingLayer({}).factors("default")[0].toBytes();
    manualSeed(5);
    const b = embeddingLayer({}).factors("default")[0].toBytes();
    manualSeed(6);
    const c = embeddingLayer({}).factors("default")[0].toBytes();
    expect(a.equals(b)).toBe(true);
    expect(a.equals(c)).toBe(false);
  });
});

describe("linear init", () => {
  test("default: A ~ kaiming_uniform_(a=√5) — U(±1/√in) — and B exactly zero", () => {
    manualSeed(24);
    const [A, B] = linearLayer({}).factors("default");
    const bound = Math.sqrt(6 / ((1 + 5) * 512));
    const values = A.toList();
    expect(Math.max(...values.map(Math.abs))).toBeLessThanOrEqual(bound);
    expect(Math.max(...values.map(Math.abs))).toBeGreaterThan(0.95 * bound);
    // Uniform on [-b, b] has std b/√3.
    expect(Math.abs(stats(A).std - bound / Math.sqrt(3))).toBeLessThan(0.02 * bound);
    expect(allZero(B)).toBe(true);
  });

  test('"gaussian": A ~ N(0, 1/r), B exactly zero', () => {
    manualSeed(25);
    const [A, B] = linearLayer({ initLoraWeights: "gaussian", r: 8 }, 4096).factors("default");
    const s = stats(A); // 32768 samples
    expect(Math.abs(s.std - 1 / 8)).toBeLessThan(0.003);
    expect(Math.abs(s.mean)).toBeLessThan(0.003);
    expect(allZero(B)).toBe(true);
  });

  test("false: both factors random (not a no-op), as in PEFT", () => {
    manualSeed(26);
    const [A, B] = linearLayer({ initLoraWeights: false }).factors("default");
    expect(allZero(A)).toBe(false);
    expect(allZero(B)).toBe(false);
  });
});
