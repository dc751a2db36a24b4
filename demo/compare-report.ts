/** The table (markdown) and the chart (SVG, vega-lite) of an initialization comparison. */
import { EARLY_STEPS } from "./compare-runner";
import type { Comparison } from "./compare-runner";

/** Mean and sample standard deviation over seeds (std 0 for a single seed). */
export interface Stat {
  mean: number;
  std: number;
}

export function stat(values: number[]): Stat {
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  const std = values.length < 2 ? 0 : Math.sqrt(values.reduce((a, b) => a + (b - mean) ** 2, 0) / (values.length - 1));
  return { mean, std };
}

/** One line of the table: a strategy's figures over seeds. */
export interface TableRow {
  strategy: string;
  evalBefore: Stat;
  /** Training loss at each of {@link EARLY_STEPS}. */
  early: Stat[];
  finalTrain: Stat;
  evalAfter: Stat;
  msPerStep: Stat;
}

export function tableRows(c: Comparison): TableRow[] {
  return c.results.map(({ strategy, runs }) => ({
    strategy: strategy.name,
    evalBefore: stat(runs.map((r) => r.evalBefore)),
    early: EARLY_STEPS.map((s) => stat(runs.map((r) => r.curve[s - 1]))),
    finalTrain: stat(runs.map((r) => r.curve[r.curve.length - 1])),
    evalAfter: stat(runs.map((r) => r.evalAfter)),
    msPerStep: stat(runs.map((r) => r.msPerStep)),
  }));
}

const cell = (s: Stat, digits = 3) => `${s.mean.toFixed(digits)} ± ${s.std.toFixed(digits)}`;

/** The caption and the table, in markdown. */
export function markdownTable(c: Comparison): string {
  const columns = ["strategy", "eval loss at step 0", ...EARLY_STEPS.map((s) => `loss @ step ${s}`), "final train loss", "eval loss at the end", "ms / step"];
  return [
    c.task.caption(c.steps, c.seeds),
    "",
    `| ${columns.join(" | ")} |`,
    `|${"---|".repeat(columns.length)}`,
    ...tableRows(c)
      .map((r) => [r.strategy, cell(r.evalBefore), ...r.early.map((s) => cell(s)), cell(r.finalTrain), cell(r.evalAfter), cell(r.msPerStep, 1)].join(" | "))
      .map((line) => `| ${line} |`),
    "",
  ].join("\n");
}

/** Loss curves: the mean over seeds as a line, with a band of ± one standard deviation. */
export function renderChart(c: Comparison): Promise<string> {
  // vega and vega-lite are only needed here; loading them lazily keeps the demo's start fast.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const vega = require("vega");
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const vl = require("vega-lite");
  const rows = c.results.flatMap(({ strategy, runs }) =>
    runs.flatMap((run, seed) => run.curve.map((loss, i) => ({ strategy: strategy.name, seed, step: i + 1, loss }))),
  );
  const spec = vl.compile({
    $schema: "https://vega.github.io/schema/vega-lite/v5.json",
    title: `${c.task.title} (mean ± std over ${c.seeds} seeds)`,
    width: 640,
    height: 400,
    data: { values: rows },
    encoding: {
      x: { field: "step", type: "quantitative", title: "training step" },
      // The legend names are long: no truncation (vega's default cuts labels at 160 px).
      // Its order is the strategies' order, not the alphabet's.
      color: {
        field: "strategy",
        type: "nominal",
        title: "strategy",
        sort: c.results.map((r) => r.strategy.name),
        // More strategies than tableau10's ten colours: tableau20 keeps every line distinct.
        scale: { scheme: "tableau20" },
        // The symbols would take the bands' faint opacity: drawn opaque and thick, like the lines.
        legend: { labelLimit: 0, symbolType: "stroke", symbolOpacity: 1, symbolStrokeWidth: 3 },
      },
    },
    layer: [
      {
        mark: { type: "errorband", extent: "stdev", opacity: 0.18 },
        encoding: { y: { field: "loss", type: "quantitative", title: "training loss", scale: { type: "log", nice: false } } },
      },
      {
        mark: { type: "line", strokeWidth: 1.5 },
        encoding: { y: { aggregate: "mean", field: "loss", type: "quantitative" } },
      },
    ],
  }).spec;
  const view = new vega.View(vega.parse(spec), { renderer: "none" });
  return view.toSVG();
}
