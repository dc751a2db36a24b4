/**
 * Saving a trained PiSSA/OLoRA adapter as a plain LoRA adapter for the ORIGINAL base weights
 * (PEFT's path_initial_model_for_weight_conversion): applied to the original base, the converted
 * adapter reproduces the trained model.
 */
import * as fs from "fs";
import * as path from "path";
import { ConfigError, FormatError, Tensor, lora, manualSeed, mseLoss, nn, optim, randn } from "../../lib";
import { tempDirs } from "../helpers/temp";
import { maxAbsDiff } from "../helpers/stats";

class Block extends nn.Module {
  q = new nn.Linear(10, 10);
  up = new nn.Linear(10, 14);
  proj = new nn.Conv1D(10, 14);
  override forward(x: Tensor): Tensor {
    return this.proj.forward(this.up.forward(this.q.forward(x)).tanh());
  }
}

/** The same base model every time (weights from the seed). */
function original(): Block {
  manualSeed(21);
  const m = new Block();
  m.proj.weight = randn([14, 10]).mul(0.3);
  return m;
}

const { make: tmp, cleanup } = tempDirs("tl-convert-");
afterAll(cleanup);

function trainFewSteps(lm: lora.LoraModel, x: Tensor, y: Tensor, steps: number): void {
  const opt = new optim.AdamW(lm.trainableParameters(), { lr: 0.02 });
  for (let i = 0; i < steps; i++) {
    opt.zeroGrad();
    mseLoss(lm.forward(x) as Tensor, y).backward();
    opt.step();
  }
}

describe("PiSSA/OLoRA → plain LoRA conversion at save time", () => {
  for (const [init, extra] of [
    ["pissa", {}],
    ["pissa_niter_2", { useRslora: true }],
    ["olora", { rankPattern: { up: 2 }, alphaPattern: { q: 6 } }],
  ] as const) {
    test(`${init}${Object.keys(extra).length ? ` (${Object.keys(extra).join(", ")})` : ""}: the converted adapter on the original base equals the trained model`, () => {
      const initialDir = tmp();
      const outDir = tmp();
      const lm = lora.injectAdapter(original(), { r: 4, loraAlpha: 8, targetModules: ["q", "up", "proj"], initLoraWeights: init, ...extra });
      lm.saveAdapter(initialDir);
      manualSeed(4);
      const x = randn([6, 10]);
      const y = randn([6, 10]);
      trainFewSteps(lm, x, y, 5);
      const trained = lm.forward(x) as Tensor;
      lm.saveAdapter(outDir, { pathInitialModelForWeightConversion: initialDir });

      const config = JSON.parse(fs.readFileSync(path.join(outDir, "adapter_config.json"), "utf8"));
      expect(config.init_lora_weights).toBe(true);
      expect(config.r).toBe(8);
      expect(config.lora_alpha).toBeCloseTo("useRslora" in extra ? 8 * Math.SQRT2 : 16, 12);
      if ("rankPattern" in extra) {
        expect(config.rank_pattern).toEqual({ up: 4 });
        expect(config.alpha_pattern).toEqual({ q: 12 });
      }

      const base = original();
      const plainOut = base.forward(x);
      const converted = lora.loadAdapter(base, outDir);
      const out = converted.forward(x) as Tensor;
      expect(maxAbsDiff(out, trained)).toBeLessThan(1e-5);
      // Training moved the model: the check is not satisfied by the base alone.
      expect(maxAbsDiff(trained, plainOut)).toBeGreaterThan(1e-3);
    });
  }

  test("the unconverted PiSSA adapter loads onto the residual base without rewriting it again", () => {
    const dir = tmp();
    const lm = lora.injectAdapter(original(), { r: 4, loraAlpha: 8, targetModules: ["q", "up"], initLoraWeights: "pissa" });
    lm.saveAdapter(dir);
    const residual = lm.unload();
    const residualQ = residual.q.weight.clone();
    const x = randn([3, 10]);
    const reloaded = lora.loadAdapter(residual, dir);
    expect(JSON.parse(fs.readFileSync(path.join(dir, "adapter_config.json"), "utf8")).init_lora_weights).toBe("pissa");
    expect(reloaded.peftConfig.default.initLoraWeights).toBe("pissa");
    expect((reloaded.loraLayers().find(([p]) => p === "q")![1].base_layer.weight as Tensor).equal(residualQ)).toBe(true);
    expect(maxAbsDiff(reloaded.forward(x) as Tensor, original().forward(x))).toBeLessThan(1e-5);
  });

  test("a missing or mismatched initial adapter is refused and nothing is written", () => {
    const lm = lora.injectAdapter(original(), { r: 4, targetModules: ["q"], initLoraWeights: "olora" });
    const outDir = path.join(tmp(), "out");
    expect(() => lm.saveAdapter(outDir, { pathInitialModelForWeightConversion: path.join(tmp(), "nothing") })).toThrow(FormatError);
    expect(fs.existsSync(outDir)).toBe(false);
    const other = tmp();
    lora.injectAdapter(original(), { r: 2, targetModules: ["q"], initLoraWeights: "olora" }).saveAdapter(other);
    expect(() => lm.saveAdapter(outDir, { pathInitialModelForWeightConversion: other })).toThrow(/lora_A\.weight has shape \[2, 10\], the adapter \[4, 10\]/);
    expect(fs.existsSync(outDir)).toBe(false);
    const rs = lora.injectAdapter(original(), { r: 4, targetModules: ["q"], useRslora: true, rankPattern: { q: 2 }, initLoraWeights: "pissa" });
    expect(() => rs.saveAdapter(outDir, { pathInitialModelForWeightConversion: other })).toThrow(ConfigError);
  });
});
