/**
 * The demo's checks recomputed from the files it writes (`--save-base`: the pretrained base and
 * the fine-tuned adapter), instead of trusting the ticks it prints: the test loads both, builds
 * the demo's evaluation sets again, and measures every claim itself.
 */
import * as path from "path";
import { Tensor, io, lora, noGrad } from "../../lib";
import type { Device } from "../../lib";
import { VOCAB, encode, generateText, makeExamples } from "../../demo/data";
import { CharModel } from "../../demo/model";
import { evaluate } from "../../demo/train";
import { changedParameters, snapshot } from "./models";

/** The demo's model and data settings (demo/main.ts). */
const CONTEXT = 8;
const MODEL = { vocab: VOCAB, context: CONTEXT, embeddingDim: 24, hidden: 256 };

export interface DemoFigures {
  baseLossA: number;
  baseLossB: number;
  adaptedLossB: number;
  disabledLossA: number;
  disabledLossB: number;
  /** A freshly injected adapter (B = 0) gives exactly the base loss. */
  freshAdapterLossB: number;
  mergedMaxDiff: number;
  /** Base parameters whose bytes differ from base.safetensors after merge + unmerge. */
  changedAfterUnmerge: string[];
}

/** Loads base.safetensors and the adapter from `outDir` onto `device` and measures the demo's claims. */
export function recomputeDemo(outDir: string, device: Device): DemoFigures {
  const examples = (task: "A" | "B", count: number, seed: number) => {
    const e = makeExamples(encode(generateText(task, count, seed)), CONTEXT);
    return { ...e, inputs: e.inputs.to({ device }), targets: e.targets.to({ device }) };
  };
  const evalA = examples("A", 300, 2);
  const evalB = examples("B", 300, 4);
  const base = io.loadStateDictFileSync(path.join(outDir, "base.safetensors"));
  const model = (): CharModel => {
    const m = new CharModel(MODEL);
    m.loadStateDict(base);
    return m.to({ device });
  };
  const plain = model();
  const baseLossA = evaluate(plain, evalA);
  const baseLossB = evaluate(plain, evalB);

  const fresh = lora.injectAdapter(model(), { r: 8, loraAlpha: 16, targetModules: ["emb", "fc1", "fc2"] });
  const freshAdapterLossB = evaluate(fresh, evalB);

  const tuned = model();
  const pristine = snapshot(tuned);
  const lm = lora.loadAdapter(tuned, outDir).to({ device });
  const adaptedLossB = evaluate(lm, evalB);
  const disabledLossB = lm.withAdaptersDisabled(() => evaluate(lm, evalB));
  const disabledLossA = lm.withAdaptersDisabled(() => evaluate(lm, evalA));

  const probe = evalB.inputs.narrow(0, 0, 512);
  const adapterOut = noGrad(() => lm.forward(probe) as Tensor);
  lm.merge({ safe: true });
  const mergedMaxDiff = noGrad(() => (lm.forward(probe) as Tensor).sub(adapterOut).abs().max().item());
  lm.unmerge();
  const now = new Map([...snapshot(tuned)].map(([n, b]) => [n.replace(".base_layer", ""), b]));
  const changedAfterUnmerge = changedParameters(pristine, now);
  return { baseLossA, baseLossB, adaptedLossB, disabledLossA, disabledLossB, freshAdapterLossB, mergedMaxDiff, changedAfterUnmerge };
}

/** Asserts the demo's claims on figures measured by {@link recomputeDemo}. */
export function expectDemoClaims(f: DemoFigures, stdout: string): void {
  expect(f.freshAdapterLossB).toBe(f.baseLossB); // the adapter starts as an exact no-op
  expect(f.adaptedLossB).toBeLessThan(0.6 * f.disabledLossB); // clearly better on task B
  expect([f.disabledLossA, f.disabledLossB]).toEqual([f.baseLossA, f.baseLossB]); // disabled = the base, exactly
  expect(f.mergedMaxDiff).toBeLessThan(1e-4); // merged forward = adapter forward
  expect(f.changedAfterUnmerge).toEqual([]); // unmerge restores the base bit for bit
  // The figures the demo printed are the ones its files give.
  expect(stdout).toContain(`eval loss on B: base ${f.disabledLossB.toFixed(4)} → adapted ${f.adaptedLossB.toFixed(4)}`);
  expect(stdout).toContain(`base model: eval loss on A ${f.baseLossA.toFixed(4)}, on B ${f.baseLossB.toFixed(4)}`);
}
