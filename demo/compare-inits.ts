/**
 * `npm run compare-inits`: fine-tunes the same LoRA task under several initialization strategies
 * and seeds, on two models: the demo's character model (task "demo") and the tiny GPT of
 * examples/tiny-gpt.ts (task "gpt"). Each base is pretrained once and shared by every run. For
 * each task it writes a loss-curve chart (SVG, vega-lite: mean ± std bands over seeds), a table
 * (eval loss at step 0, training loss at steps 10 and 25 and at the end, eval loss at the end,
 * time per step) and the raw losses.
 *
 * The advice it supports: keep the default init, try other stds for special tasks, watch the
 * loss early in training, and compare strategies rather than guess.
 *
 * The default run (3 seeds; 150 steps on the demo, 100 on the GPT) takes a few minutes on two CPU cores.
 *
 * Options: --task demo|gpt|all (default all)  --out DIR (default compare-inits-output)
 *          --seeds N (default 3)  --steps N (default: 150 demo, 100 gpt)  --quick (2 seeds, 30 steps, short GPT pretraining)
 */
import * as fs from "fs";
import * as path from "path";
import { io } from "../lib";
import { demoTask } from "./compare-demo-task";
import { gptTask } from "./compare-gpt-task";
import { renderChart, markdownTable } from "./compare-report";
import { EARLY_STEPS, compareInits } from "./compare-runner";
import type { ComparisonTask } from "./compare-runner";

const TASKS = ["demo", "gpt"] as const;
type TaskId = (typeof TASKS)[number];

/** Default steps per task: the GPT's steps cost several times the demo's. */
const DEFAULT_STEPS: Record<TaskId, number> = { demo: 150, gpt: 100 };

interface Args {
  tasks: TaskId[];
  out: string;
  seeds: number;
  /** Undefined: each task's default. */
  steps?: number;
  quick: boolean;
}

const USAGE = "usage: npm run compare-inits -- [--task demo|gpt|all] [--out DIR] [--seeds N] [--steps N] [--quick]";

function parseArgs(argv: string[]): Args {
  const args: Args = { tasks: [...TASKS], out: path.resolve("compare-inits-output"), seeds: 3, quick: false };
  let seeds: number | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--out") args.out = path.resolve(argv[++i]);
    else if (a === "--seeds") seeds = Number(argv[++i]);
    else if (a === "--steps") args.steps = Number(argv[++i]);
    else if (a === "--quick") args.quick = true;
    else if (a === "--task") {
      const t = argv[++i];
      if (t === "all") args.tasks = [...TASKS];
      else if ((TASKS as readonly string[]).includes(t)) args.tasks = [t as TaskId];
      else throw new Error(`--task: expected demo, gpt or all, got ${JSON.stringify(t)}`);
    } else if (a === "--help" || a === "-h") {
      console.log(USAGE);
      process.exit(0);
    } else throw new Error(`unknown option ${a} (try --help)`);
  }
  if (args.quick) {
    args.seeds = 2;
    args.steps ??= 30;
  }
  if (seeds !== undefined) args.seeds = seeds;
  if (!Number.isInteger(args.seeds) || args.seeds < 1) throw new Error(`--seeds: expected a positive integer, got ${args.seeds}`);
  const least = Math.max(...EARLY_STEPS);
  if (args.steps !== undefined && (!Number.isInteger(args.steps) || args.steps < least)) {
    throw new Error(`--steps: expected an integer >= ${least}, got ${args.steps}`);
  }
  return args;
}

function makeTask(id: TaskId, quick: boolean): ComparisonTask {
  console.log(`Pretraining the ${id} task's base model on task A (once, shared by every run)`);
  return id === "demo" ? demoTask() : gptTask({ quick });
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const started = Date.now();
  const written: string[] = [];
  for (const id of args.tasks) {
    const task = makeTask(id, args.quick);
    const steps = args.steps ?? DEFAULT_STEPS[id];
    console.log(`Fine-tuning on task B: ${task.strategies.length} strategies × ${args.seeds} seeds × ${steps} steps`);
    const comparison = compareInits(task, { steps, seeds: args.seeds, log: (line) => console.log(line) });
    const table = markdownTable(comparison);
    const dir = path.join(args.out, id);
    fs.mkdirSync(dir, { recursive: true });
    const files = {
      "table.md": table,
      "losses.json": JSON.stringify(Object.fromEntries(comparison.results.map((r) => [r.strategy.name, r.runs])), null, 1),
      "loss-curves.svg": await renderChart(comparison),
    };
    for (const [name, content] of Object.entries(files)) {
      await io.writeFileAtomic(path.join(dir, name), content);
      written.push(path.join(dir, name));
    }
    console.log(`\n${table}`);
  }
  console.log(`Wrote ${written.join(", ")} in ${((Date.now() - started) / 1000).toFixed(1)} s.`);
}

main().catch((err) => {
  console.error(`compare-inits failed: ${(err as Error).message}`);
  process.exit(1);
});
