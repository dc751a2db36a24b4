/**
 * Garbage-collection profile of the small GPT (bench/cases/gpt-fixture.ts): for a training
 * step and a no-grad forward, each left to the collector and inside tidy(), the collections
 * per step by kind (scavenge / mark-sweep) and their time, from perf_hooks 'gc' entries, the
 * minor page faults per step (memory freed to the OS and mapped again), and the Tensor
 * objects created per step. Run: node dist/bench/diagnose/gpt-gc.js [steps]
 * (add --trace-gc to see each collection and V8's reason for it).
 */
import { PerformanceObserver, constants } from "perf_hooks";
import { AdamW } from "../../lib/optim/adamw";
import { Tensor, noGrad } from "../../lib/tensor";
import { tidy } from "../../lib/scope";
import { SmallGpt, gptSetup } from "../cases/gpt-fixture";

const KIND: Record<number, string> = {
  [constants.NODE_PERFORMANCE_GC_MINOR]: "scavenge",
  [constants.NODE_PERFORMANCE_GC_MAJOR]: "mark-sweep",
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: "incremental marking",
  [constants.NODE_PERFORMANCE_GC_WEAKCB]: "weak callbacks",
};

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

async function profile(name: string, steps: number, step: () => void): Promise<void> {
  for (let i = 0; i < 3; i++) step();
  await tick();
  const byKind = new Map<string, { count: number; ms: number }>();
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const kind = KIND[(e as unknown as { detail: { kind: number } }).detail.kind] ?? "other";
      const k = byKind.get(kind) ?? { count: 0, ms: 0 };
      k.count++;
      k.ms += e.duration;
      byKind.set(kind, k);
    }
  });
  obs.observe({ entryTypes: ["gc"] });
  const faults = process.resourceUsage().minorPageFault;
  const start = process.hrtime.bigint();
  for (let i = 0; i < steps; i++) step();
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  const faultsPerStep = (process.resourceUsage().minorPageFault - faults) / steps;
  await tick(); // gc entries are delivered on the event loop
  await tick();
  obs.disconnect();
  const gcMs = [...byKind.values()].reduce((a, k) => a + k.ms, 0);
  const kinds = [...byKind].map(([k, v]) => `${k} ${(v.count / steps).toFixed(2)}/step ${(v.ms / steps).toFixed(2)} ms/step`).join(", ");
  console.log(
    `${name.padEnd(34)} ${(ms / steps).toFixed(1)} ms/step, ${faultsPerStep.toFixed(0)} page faults/step; GC ${(gcMs / steps).toFixed(2)} ms/step (${((gcMs / ms) * 100).toFixed(1)}%): ${kinds || "none"}`,
  );
}

/** Tensor handles created by one call of `fn` (counted through a scope). */
function tensorsPerCall(fn: () => void): number {
  let n = 0;
  tidy(() => {
    const before = Tensor.prototype.dispose;
    Tensor.prototype.dispose = function (this: Tensor) {
      n++;
      before.call(this);
    };
    try {
      tidy(() => fn());
    } finally {
      Tensor.prototype.dispose = before;
    }
  });
  return n;
}

async function main(): Promise<void> {
  const steps = Number(process.argv[2] ?? 20);
  const { model, ids, loss } = gptSetup();
  const opt = new AdamW(model.trainableParameters(), { lr: 1e-4 });
  const train = () => {
    const l = loss();
    l.backward();
    opt.step();
    opt.zeroGrad();
  };
  // The forward and loss in their own scope: their handles are gone before backward, so
  // autograd frees each saved tensor as soon as backward has used it (as PyTorch does).
  const trainForwardScoped = () => {
    const l = tidy(loss);
    l.backward();
    opt.step();
    opt.zeroGrad();
  };
  const forward = () => void noGrad(() => model.forward(ids));
  console.log(`tensors created per training step: ${tensorsPerCall(train)}, per forward: ${tensorsPerCall(forward)}`);
  await profile("train step, left to the GC", steps, train);
  await profile("train step, tidy", steps, () => tidy(train));
  await profile("train step, tidy + tidy(forward)", steps, () => tidy(trainForwardScoped));
  await profile("forward, left to the GC", steps, forward);
  await profile("forward, tidy", steps, () => tidy(forward));
  const gpt = model.model as SmallGpt;
  gpt.scopePerBlock = true;
  await profile("train step, tidy + tidy per block", steps, () => tidy(train));
  await profile("forward, tidy + tidy per block", steps, () => tidy(forward));
}

void main();
