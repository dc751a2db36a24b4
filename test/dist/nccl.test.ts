/**
 * NCCL on GPUs: collectives across processes, one GPU per local rank. Runs only where the addon
 * was built with NCCL (a CUDA libtorch) and at least two GPUs are visible; skipped, visibly,
 * elsewhere.
 */
import { cuda, dist } from "../../lib";
import { describeCuda, rehearsal } from "../helpers/cuda";
import { describeOutcomes, killAll, prepare, runRanks } from "./support/ranks";

const why = rehearsal
  ? "NCCL needs real GPUs (this is a rehearsal on the CPU)"
  : !dist.isAvailable("nccl")
    ? "this addon was built without NCCL (a CUDA libtorch and the NCCL headers are needed)"
    : cuda.deviceCount() < 2
      ? `NCCL across processes needs a GPU per rank; ${cuda.deviceCount()} visible`
      : null;
if (why) process.stderr.write(`[nccl] skipped "NCCL collectives": ${why}\n`);
const itNccl = why ? it.skip : it;

describeCuda("NCCL collectives across 2 processes", () => {
  beforeAll(prepare, 300_000);
  afterAll(killAll);

  itNccl("sum and avg all-reduce and broadcast on cuda:LOCAL_RANK give the hand-computed values", async () => {
    const outcomes = await runRanks<{ device: string; sum: number[]; avg: number[]; broadcast: number[] }>(2, { mode: "nccl-collectives" });
    if (outcomes.some((o) => !o.result?.ok)) throw new Error(describeOutcomes(outcomes));
    for (const o of outcomes) {
      expect(o.result).toMatchObject({ device: `cuda:${o.rank}`, sum: [3, 30], avg: [1.5, 1], broadcast: [1, 1] });
    }
  }, 120_000);
});
