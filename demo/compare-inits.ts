/**
 * `npm run compare-inits`: trains the same LoRA fine-tuning task (the demo's task B on the
 * demo's pretrained model) under several initialization strategies and seeds, and writes a
 * loss-curve chart (SVG, drawn with vega-lite: mean ± std bands over seeds) and a table of the
 * losses at steps 10 and 25 and at the end, with the time per training step.
 *
 * The weight-aware inits (PiSSA, OLoRA, orthogonal) are defined for Linear layers only, so they
 * adapt fc1 and fc2; "default, Linear only" is their baseline with the same targets.
 *
 * The advice it supports: keep the default init, try other stds for special tasks, watch the
 * loss early in training, and compare strategies rather than guess.
 *
 * Options: --out DIR (default compare-inits-output)  --seeds N (default 3)  --steps N (default 150)  --quick
 */
import * as fs from "fs";
import * as path from "path";
import { lora, manualSeed } from "../lib";
import { io } from "../lib";
import { VOCAB, encode, generateText, makeExamples } from "./data";
import { CharModel } from "./model";
import { evaluate, train } from "./train";

/** One initialization strategy under comparison. */
interface Strategy {
  name: string;
  config: Partial<lora.LoraConfig>;
  /** Adapted modules (default: the embedding and both Linear layers). */
  targets?: string[];
}

const ALL = ["emb", "fc1", "fc2"];
const LINEAR = ["fc1", "fc2"];

const STRATEGIES: Strategy[] = [
  { name: "a-normal std 1 (default)", config: {} },
  { name: "b-normal std 1 (PEFT)", config: { embeddingInit: "b-normal" } },
  { name: "a-normal std 0.1", config: { embeddingInitStd: 0.1 } },
  { name: "a-normal std 0.01", config: { embeddingInitStd: 0.01 } },
  { name: 'Linear "gaussian"', config: { initLoraWeights: "gaussian" } },
  { name: "DoRA (default init)", config: { useDora: true } },
  { name: "default, Linear only", config: {}, targets: LINEAR },
  { name: "PiSSA, Linear only", config: { initLoraWeights: "pissa" }, targets: LINEAR },
  { name: "PiSSA niter 4, Linear only", config: { initLoraWeights: "pissa_niter_4" }, targets: LINEAR },
  { name: "OLoRA, Linear only", config: { initLoraWeights: "olora" }, targets: LINEAR },
  { name: "orthogonal, Linear only", config: { initLoraWeights: "orthogonal" }, targets: LINEAR },
];

const CONTEXT = 8;
const MODEL = { vocab: VOCAB, context: CONTEXT, embeddingDim: 24, hidden: 256 };
const EARLY_STEPS = [10, 25];

interface Args {
  out: string;
  seeds: number;
  steps: number;
}

function parseArgs(argv: string[]): Args {
  const args: Args = { out: path.resolve("compare-inits-output"), seeds: 3, steps: 150 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--out") args.out = path.resolve(argv[++i]);
    else if (a === "--seeds") args.seeds = Number(argv[++i]);
    else if (a === "--steps") args.steps = Number(argv[++i]);
    else if (a === "--quick") Object.assign(args, { seeds: 2, steps: 30 });
    else if (a === "--help" || a === "-h") {
      console.log("usage: npm run compare-inits -- [--out DIR] [--seeds N] [--steps N] [--quick]");
      process.exit(0);
    } else throw new Error(`unknown option ${a} (try --help)`);
  }
  if (!Number.isInteger(args.seeds) || args.seeds < 1) throw new Error(`--seeds: expected a positive integer, got ${args.seeds}`);
  if (!Number.isInteger(args.steps) || args.steps < Math.max(...EARLY_STEPS)) {
    throw new Error(`--steps: expected an integer >= ${Math.max(...EARLY_STEPS)}, got ${args.steps}`);
  }
  return args;
}

const mean = (v: number[]) => v.reduce((a, b) => a + b, 0) / v.length;
const std = (v: number[]) => (v.length < 2 ? 0 : Math.sqrt(v.reduce((a, b) => a + (b - mean(v)) ** 2, 0) / (v.length - 1)));
const cell = (v: number[]) => `${mean(v).toFixed(3)} ± ${std(v).toFixed(3)}`;

/** Loss curves of one strategy, one array per seed. */
type Curves = number[][];

/** Line of the mean with a band of ± one standard deviation over seeds (rows: one per seed and step). */
async function renderChart(rows: { strategy: string; seed: number; step: number; loss: number }[]): Promise<string> {
  // vega and vega-lite are only needed here; loading them lazily keeps the demo's start fast.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const vega = require("vega");
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const vl = require("vega-lite");
  const spec = vl.compile({
    $schema: "https://vega.github.io/schema/vega-lite/v5.json",
    title: "LoRA fine-tuning loss by initialization (mean ± std over seeds)",
    width: 640,
    height: 400,
    data: { values: rows },
    encoding: {
      x: { field: "step", type: "quantitative", title: "training step" },
      // The legend names are long: no truncation (vega's default cuts labels at 160 px).
      color: { field: "strategy", type: "nominal", title: "strategy", legend: { labelLimit: 0, symbolType: "stroke" } },
    },
    layer: [
      {
        mark: { type: "errorband", extent: "stdev", opacity: 0.18 },
        encoding: { y: { field: "loss", type: "quantitative", title: "training loss", scale: { type: "log" } } },
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

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const started = Date.now();
  const examples = (task: "A" | "B", count: number, seed: number) => makeExamples(encode(generateText(task, count, seed)), CONTEXT);
  const trainB = examples("B", 1500, 3);
  const evalB = examples("B", 300, 4);

  console.log("Pretraining the base model on task A (once, shared by every run)");
  manualSeed(0);
  const base = new CharModel(MODEL);
  train(base, examples("A", 4000, 1), { steps: 600, batchSize: 256, lr: 3e-3, label: "pretrain" });
  const baseState = base.stateDict();

  const results = new Map<string, { curves: Curves; evals: number[]; msPerStep: number[] }>();
  for (const strategy of STRATEGIES) {
    const curves: Curves = [];
    const evals: number[] = [];
    const msPerStep: number[] = [];
    for (let seed = 0; seed < args.seeds; seed++) {
      const model = new CharModel(MODEL);
      model.loadStateDict(baseState);
      manualSeed(1000 + seed);
      const lm = lora.injectAdapter(model, { r: 8, loraAlpha: 16, targetModules: strategy.targets ?? ALL, ...strategy.config });
      const curve: number[] = [];
      // Same data order for every strategy and seed: only the initialization differs.
      const t0 = process.hrtime.bigint();
      train(lm, trainB, { steps: args.steps, batchSize: 256, lr: 5e-3, label: strategy.name, quiet: true, onStep: (_s, loss) => curve.push(loss) });
      msPerStep.push(Number(process.hrtime.bigint() - t0) / 1e6 / args.steps);
      curves.push(curve);
      evals.push(evaluate(lm, evalB));
    }
    results.set(strategy.name, { curves, evals, msPerStep });
    console.log(
      `  ${strategy.name.padEnd(26)} loss at step ${EARLY_STEPS[0]}: ${cell(curves.map((c) => c[EARLY_STEPS[0] - 1]))}, eval after ${args.steps}: ${cell(evals)}`,
    );
  }

  fs.mkdirSync(args.out, { recursive: true });
  const header = `| strategy | ${EARLY_STEPS.map((s) => `loss @ step ${s}`).join(" | ")} | final train loss | eval loss (task B) | ms / step |`;
  const table = [
    `Fine-tuning the demo model on task B: r = 8, alpha = 16, AdamW lr 5e-3, ${args.steps} steps, ${args.seeds} seeds (mean ± std).`,
    "",
    header,
    `|${"---|".repeat(EARLY_STEPS.length + 4)}`,
    ...[...results].map(([name, r]) => {
      const early = EARLY_STEPS.map((s) => cell(r.curves.map((c) => c[s - 1])));
      const ms = `${mean(r.msPerStep).toFixed(1)} ± ${std(r.msPerStep).toFixed(1)}`;
      return `| ${name} | ${early.join(" | ")} | ${cell(r.curves.map((c) => c[c.length - 1]))} | ${cell(r.evals)} | ${ms} |`;
    }),
    "",
  ].join("\n");
  const rows = [...results].flatMap(([strategy, r]) => r.curves.flatMap((curve, seed) => curve.map((loss, i) => ({ strategy, seed, step: i + 1, loss }))));
  const files = {
    "table.md": table,
    "losses.json": JSON.stringify(Object.fromEntries([...results].map(([k, v]) => [k, v])), null, 1),
    "loss-curves.svg": await renderChart(rows),
  };
  for (const [name, content] of Object.entries(files)) await io.writeFileAtomic(path.join(args.out, name), content);
  console.log(`\n${table}`);
  console.log(
    `Wrote ${Object.keys(files)
      .map((f) => path.join(args.out, f))
      .join(", ")} in ${((Date.now() - started) / 1000).toFixed(1)} s.`,
  );
}

main().catch((err) => {
  console.error(`compare-inits failed: ${(err as Error).message}`);
  process.exit(1);
});
