/**
 * `npm run bench -- --memory`: RSS growth over 100 000 LoRA Linear forward calls with explicit
 * `dispose()`, then 100 000 leaving the results to the garbage collector, then 100 000 more left
 * to the collector in one synchronous loop that never yields to the event loop — the hard case:
 * it stays flat only because tensor finalizers run during garbage collection itself (a build
 * with Node's experimental "basic finalizers"; see CMakeLists.txt).
 */
import { LoraLinear } from "../lib/lora/layers";
import { Tensor, randn } from "../lib/tensor";
import { loraLinear } from "./cases/fixtures";

const yieldToLoop = () => new Promise<void>((resolve) => setImmediate(resolve));
const rssMiB = () => process.memoryUsage().rss / 2 ** 20;

interface Phase {
  name: string;
  calls: number;
  rssAfterWarmupMiB: number;
  rssEndMiB: number;
  growthPercent: number;
}

async function phase(name: string, layer: LoraLinear, x: Tensor, calls: number, dispose: boolean, yieldEvery: number): Promise<Phase> {
  const warmup = Math.min(10_000, calls / 10);
  let rssAfterWarmupMiB = 0;
  for (let i = 1; i <= warmup + calls; i++) {
    const y = layer.forward(x);
    if (dispose) y.dispose();
    if (i % yieldEvery === 0) await yieldToLoop();
    if (i === warmup) rssAfterWarmupMiB = rssMiB();
  }
  const rssEndMiB = rssMiB();
  return { name, calls, rssAfterWarmupMiB, rssEndMiB, growthPercent: ((rssEndMiB - rssAfterWarmupMiB) / rssAfterWarmupMiB) * 100 };
}

/** Runs both phases (10 000 calls each with `quick`) and prints RSS after warm-up and at the end. */
export async function runMemoryCheck(options: { quick: boolean }): Promise<Phase[]> {
  const calls = options.quick ? 10_000 : 100_000;
  const layer = loraLinear(256, 256, 16);
  const x = randn([8, 256]);
  const phases = [
    await phase("explicit dispose()", layer, x, calls, true, 1000),
    await phase("left to the GC", layer, x, calls, false, 1000),
    await phase("GC, never yielding", layer, x, calls, false, Infinity),
  ];
  console.log("memory: LoRA Linear 8x256 r=16 forward (the first two phases yield to the event loop every 1000 calls)");
  for (const p of phases) {
    console.log(
      `  ${p.name.padEnd(20)} ${p.calls} calls: RSS ${p.rssAfterWarmupMiB.toFixed(1)} MiB after warm-up → ${p.rssEndMiB.toFixed(1)} MiB at the end (${p.growthPercent >= 0 ? "+" : ""}${p.growthPercent.toFixed(1)}%)`,
    );
  }
  return phases;
}
