/**
 * Data-parallel cost on this machine: per training step, the compute (forward + backward) and the
 * gradient synchronization (DataParallel.syncGradients over Gloo on 127.0.0.1), and the bytes
 * that cross the loopback interface per step. Two workloads:
 *   demo      the demo's CharModel (context 8, embedding 24, hidden 256) with LoRA r=8 on emb,
 *             fc1, fc2; global batch 256 split across the ranks
 *   gpt2-attn a LoRA adapter of GPT-2-small size (r=8 on c_attn of 12 layers: 12 × 8 × (768 + 2304)
 *             values): 12 Linear(768, 2304) layers on 128 tokens per rank (the c_attn matmuls of a
 *             GPT-2-small step alone, so its compute is a lower bound of a real step's)
 * and the layouts: 1 process × 1 thread, 2 processes × 1 thread, 1 process × 2 threads, and
 * 2 processes with DataParallel's overlap (all-reduces started during backward, 0.25 MiB buckets).
 *
 * Run: node scripts/setup.js && node dist/bench/dist.js [--steps N]
 * Each configuration runs its ranks as child processes of this script (BENCH_DIST_TASK set).
 */
import { spawn } from "child_process";
import * as fs from "fs";
import * as net from "net";
import * as os from "os";
import { Tensor, crossEntropy, dist, lora, manualSeed, nn, optim, randn, tensor } from "../lib";
import { CharModel } from "../demo/model";

interface Task {
  workload: "demo" | "gpt2-attn";
  worldSize: number;
  threads: number;
  steps: number;
  /** DataParallel's overlap option, with buckets of this many MiB. */
  overlapBucketMb?: number;
}

interface RankReport {
  computeMs: number;
  syncMs: number;
  stepMs: number;
  gradientBytes: number;
  loopbackBytesPerStep: number | null;
}

/** `count` pseudo-random ids below `high`, as an int64 tensor of `shape`. */
function randomIds(high: number, shape: number[], seed: number): Tensor {
  let s = seed >>> 0;
  const count = shape.reduce((a, b) => a * b, 1);
  const ids = Array.from({ length: count }, () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) % high);
  return tensor(ids, { dtype: "int64", shape });
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Bytes the loopback interface carried so far (all processes on the machine), or null off Linux. */
function loopbackBytes(): number | null {
  try {
    const line = fs
      .readFileSync("/proc/net/dev", "utf8")
      .split("\n")
      .find((l) => l.trim().startsWith("lo:"));
    return line ? Number(line.split(":")[1].trim().split(/\s+/)[0]) : null;
  } catch {
    return null;
  }
}

/** 12 c_attn-shaped layers side by side, each fed the same tokens. */
class AttnProjections extends nn.Module {
  layers = new nn.ModuleList(Array.from({ length: 12 }, () => new nn.Linear(768, 2304)));
  override forward(x: Tensor): Tensor {
    let total: Tensor | null = null;
    for (const layer of this.layers) {
      const y = (layer.forward(x) as Tensor).pow(2).mean();
      total = total ? total.add(y) : y;
    }
    return total as Tensor;
  }
}

/** One rank's timed loop (run in a child process). */
async function runRank(task: Task): Promise<RankReport> {
  dist.setNumThreads(task.threads);
  const distributed = task.worldSize > 1;
  if (distributed) await dist.initProcessGroup({ backend: "gloo", timeoutMs: 120_000 });
  manualSeed(0);
  let lm: lora.LoraModel;
  let step: () => Tensor;
  if (task.workload === "demo") {
    const vocab = 28;
    const model = new CharModel({ vocab, context: 8, embeddingDim: 24, hidden: 256 });
    lm = lora.injectAdapter(model, { r: 8, loraAlpha: 16, targetModules: ["emb", "fc1", "fc2"] });
    const rows = 256 / task.worldSize;
    const ids = randomIds(vocab, [rows, 8], 1);
    const targets = randomIds(vocab, [rows], 2);
    step = () => crossEntropy(lm.forward(ids) as Tensor, targets);
  } else {
    lm = lora.injectAdapter(new AttnProjections(), {
      r: 8,
      loraAlpha: 16,
      targetModules: [
        "layers.0",
        "layers.1",
        "layers.2",
        "layers.3",
        "layers.4",
        "layers.5",
        "layers.6",
        "layers.7",
        "layers.8",
        "layers.9",
        "layers.10",
        "layers.11",
      ],
    });
    const x = randn([128, 768]);
    step = () => lm.forward(x) as Tensor;
  }
  const dp = distributed ? await dist.DataParallel.create(lm, task.overlapBucketMb ? { overlap: true, bucketCapMb: task.overlapBucketMb } : {}) : null;
  const params = lm.trainableParameters();
  const opt = new optim.SGD(params, { lr: 1e-3 });
  const compute: number[] = [];
  const sync: number[] = [];
  const total: number[] = [];
  const warmup = 3;
  let lo0: number | null = null;
  for (let i = 0; i < warmup + task.steps; i++) {
    if (i === warmup) {
      if (dp) await dp.group.barrier();
      lo0 = loopbackBytes();
    }
    const t0 = process.hrtime.bigint();
    step().backward();
    const t1 = process.hrtime.bigint();
    if (dp) await dp.syncGradients();
    const t2 = process.hrtime.bigint();
    opt.step();
    opt.zeroGrad();
    const t3 = process.hrtime.bigint();
    if (i >= warmup) {
      compute.push(Number(t1 - t0) / 1e6);
      sync.push(Number(t2 - t1) / 1e6);
      total.push(Number(t3 - t0) / 1e6);
    }
  }
  if (dp) await dp.group.barrier();
  const lo1 = loopbackBytes();
  if (distributed) dist.destroyProcessGroup();
  return {
    computeMs: median(compute),
    syncMs: median(sync),
    stepMs: median(total),
    gradientBytes: params.reduce((n, p) => n + p.numel * 4, 0),
    loopbackBytesPerStep: dp && lo0 !== null && lo1 !== null ? (lo1 - lo0) / task.steps : null,
  };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/** Runs one configuration's ranks and returns rank 0's report. */
async function runConfig(task: Task): Promise<RankReport> {
  const port = await freePort();
  const runs = Array.from({ length: task.worldSize }, (_, rank) => {
    const child = spawn(process.execPath, [__filename], {
      stdio: ["ignore", "pipe", "inherit"],
      env: {
        ...process.env,
        BENCH_DIST_TASK: JSON.stringify(task),
        RANK: String(rank),
        WORLD_SIZE: String(task.worldSize),
        MASTER_ADDR: "127.0.0.1",
        MASTER_PORT: String(port),
        OMP_NUM_THREADS: String(task.threads),
      },
    });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    return new Promise<RankReport>((resolve, reject) =>
      child.on("close", (code) =>
        code === 0 ? resolve(JSON.parse(out.trim().split("\n").pop() as string)) : reject(new Error(`rank ${rank} exited with ${code}`)),
      ),
    );
  });
  return (await Promise.all(runs))[0];
}

async function main(): Promise<void> {
  const stepsAt = process.argv.indexOf("--steps");
  const steps = stepsAt > 0 ? Number(process.argv[stepsAt + 1]) : 30;
  const layouts = [
    { worldSize: 1, threads: 1, label: "1 process × 1 thread" },
    { worldSize: 2, threads: 1, label: "2 processes × 1 thread" },
    { worldSize: 1, threads: 2, label: "1 process × 2 threads" },
    { worldSize: 2, threads: 1, label: "2 processes × 1 thread, overlap, 0.25 MiB buckets", overlapBucketMb: 0.25 },
  ];
  console.log(`data-parallel LoRA steps on ${os.cpus().length} cores, Gloo over 127.0.0.1, median of ${steps} steps`);
  console.log("| workload | layout | compute ms | sync ms | step ms | sync / step | gradient bytes | loopback bytes / step |");
  console.log("|---|---|---|---|---|---|---|---|");
  for (const workload of ["demo", "gpt2-attn"] as const) {
    for (const l of layouts) {
      const r = await runConfig({ workload, worldSize: l.worldSize, threads: l.threads, steps, overlapBucketMb: l.overlapBucketMb });
      const share = r.stepMs > 0 ? `${((100 * r.syncMs) / r.stepMs).toFixed(0)} %` : "-";
      console.log(
        `| ${workload} | ${l.label} | ${r.computeMs.toFixed(2)} | ${r.syncMs.toFixed(2)} | ${r.stepMs.toFixed(2)} | ${share} | ${r.gradientBytes} | ${r.loopbackBytesPerStep === null ? "-" : Math.round(r.loopbackBytesPerStep)} |`,
      );
    }
  }
}

if (process.env.BENCH_DIST_TASK) {
  runRank(JSON.parse(process.env.BENCH_DIST_TASK) as Task).then(
    (r) => process.stdout.write(JSON.stringify(r) + "\n"),
    (e: unknown) => {
      console.error(e);
      process.exit(1);
    },
  );
} else {
  main().catch((e: unknown) => {
    console.error(e);
    process.exitCode = 1;
  });
}
