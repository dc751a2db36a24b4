import { Tensor, noGrad, tidy } from "../../lib";
import { pretrain, windows } from "../../examples/tiny-gpt";
import { gptTask } from "../../demo/compare-gpt-task";
import { markdownTable, renderChart, tableRows } from "../../demo/compare-report";
import { EARLY_STEPS, compareInits } from "../../demo/compare-runner";
import type { Comparison } from "../../demo/compare-runner";

/** Mean next-character negative log-likelihood from log-softmax and a gather, not crossEntropy. */
function nllByHand(model: { forward(x: Tensor): unknown }, batch: Tensor): number {
  return noGrad(() =>
    tidy(() => {
      const t = batch.shape[1] - 1;
      const logits = model.forward(batch.narrow(1, 0, t)) as Tensor; // (B, T, vocab)
      const logp = logits.logSoftmax(-1);
      const picked = logp.gather(2, batch.narrow(1, 1, t).unsqueeze(2)); // (B, T, 1)
      return -picked.mean().item();
    }),
  );
}

describe("npm run compare-inits on the tiny GPT (short settings)", () => {
  const STEPS = 25;
  const SEEDS = 2;
  let comparison: Comparison;

  // 11 strategies × 2 seeds × 25 steps: about a minute on a quiet machine, several on a busy one.
  beforeAll(() => {
    comparison = compareInits(gptTask({ quick: true }), { steps: STEPS, seeds: SEEDS });
  }, 900_000);

  test("every strategy runs, and its table row has finite figures", () => {
    const names = comparison.results.map((r) => r.strategy.name);
    for (const expected of [
      "a-normal std 1 (default)",
      "DoRA (default init)",
      "PiSSA, Linear only",
      "PiSSA niter 4, Linear only",
      "OLoRA, Linear only",
      "orthogonal, Linear only",
    ]) {
      expect(names).toContain(expected);
    }
    const rows = tableRows(comparison);
    expect(rows.map((r) => r.strategy)).toEqual(names);
    for (const r of rows) {
      const figures = [r.evalBefore, ...r.early, r.finalTrain, r.evalAfter, r.msPerStep];
      expect(figures).toHaveLength(EARLY_STEPS.length + 4);
      for (const f of figures) {
        expect(Number.isFinite(f.mean)).toBe(true);
        expect(Number.isFinite(f.std)).toBe(true);
      }
      // Fine-tuning did something: the loss moved from the base's.
      expect(r.evalAfter.mean).toBeLessThan(r.evalBefore.mean);
    }
    for (const { runs } of comparison.results) {
      expect(runs).toHaveLength(SEEDS);
      for (const run of runs) expect(run.curve).toHaveLength(STEPS);
    }
    const markdown = markdownTable(comparison);
    for (const name of names) expect(markdown).toMatch(new RegExp(`^\\| ${name.replace(/[.()"]/g, "\\$&")} \\| \\d`, "m"));
    expect(markdown).not.toMatch(/NaN|Infinity/);
  });

  test("PiSSA and OLoRA start from the base model's loss: their rewritten base plus adapter is the original", () => {
    // The same base, pretrained again (seeded), and its loss on the evaluation windows computed here.
    const base = pretrain(true);
    const baseLoss = nllByHand(base, windows("B", 60, 3).inputs);
    for (const name of ["PiSSA, Linear only", "PiSSA niter 4, Linear only", "OLoRA, Linear only"]) {
      const { runs } = comparison.results.find((r) => r.strategy.name === name)!;
      for (const run of runs) expect(Math.abs(run.evalBefore - baseLoss)).toBeLessThan(1e-4 * baseLoss);
    }
  });

  test("the chart writes every strategy's name whole in its legend", async () => {
    const svg = await renderChart(comparison);
    const escaped = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;");
    for (const { strategy } of comparison.results) expect(svg).toContain(`>${escaped(strategy.name)}</text>`);
    expect(svg).not.toContain("…");
  });
});
