/**
 * DataParallel over 2 and 3 Gloo processes: LoRA training of the demo model for K steps. After
 * every step the adapter parameters are bit-identical across ranks, and equal (fp32, within 1e-6)
 * to a single process trained on the concatenated batch with the mean loss. Each rank starts
 * from differently initialized adapters, so the match also shows the start-up broadcast.
 */
import { dist } from "../../lib";
import { RankOutcome, describeOutcomes, killAll, prepare, runRanks } from "./support/ranks";

const gloo = dist.isAvailable("gloo");
if (!gloo) console.warn("skipped: this addon was built without Gloo (install libgloo-dev and rebuild)");
const itGloo = gloo ? it : it.skip;

interface Trained {
  /** history[step][param] = values after `step` optimizer steps (0: after DataParallel.create). */
  history: number[][][];
  buckets: number | null;
  gradientBytes: number | null;
}

const STEPS = 4;
const ROWS_PER_RANK = 3;

beforeAll(prepare, 300_000);
afterAll(killAll);

function ok<T>(outcomes: RankOutcome<T>[]): (T & { ok: boolean })[] {
  if (outcomes.some((o) => !o.result?.ok || o.status !== 0)) throw new Error(describeOutcomes(outcomes));
  return outcomes.map((o) => o.result!);
}

function maxAbsDiff(a: number[][][], b: number[][][]): number {
  let d = 0;
  a.forEach((step, i) => step.forEach((p, j) => p.forEach((v, k) => (d = Math.max(d, Math.abs(v - b[i][j][k]))))));
  return d;
}

describe.each([
  [2, {}],
  [3, { bucketCapMb: 0.0002 }], // ~210 bytes: several buckets, one all-reduce each
  [2, { bucketCapMb: 0.0002, overlap: true }], // all-reduces started from autograd hooks during backward
  [3, { overlap: true }],
])("DataParallel over Gloo, %i processes %j", (n, options) => {
  itGloo(`trains like one process on the concatenated batch, identical on every rank after each of ${STEPS} steps`, async () => {
    const task = { mode: "train", steps: STEPS, rowsPerRank: ROWS_PER_RANK, ...options };
    const [ranks, [reference]] = await Promise.all([
      runRanks<Trained>(n, task).then(ok),
      runRanks<Trained>(1, { mode: "train", steps: STEPS, totalRows: n * ROWS_PER_RANK }).then(ok),
    ]);
    for (const r of ranks.slice(1)) expect(r.history).toEqual(ranks[0].history); // bit for bit
    expect(maxAbsDiff(ranks[0].history, reference.history)).toBeLessThan(1e-6);
    // The parameters really moved, so the comparison above is not between two idle models.
    expect(maxAbsDiff(ranks[0].history.slice(0, 1), ranks[0].history.slice(STEPS))).toBeGreaterThan(1e-3);
    if ("bucketCapMb" in options) expect(ranks[0].buckets).toBeGreaterThan(1);
    // 6 adapter factors of the demo model (r = 4): emb A 4×11, B 6×4; fc1 A 4×18, B 10×4; fc2 A 4×10, B 11×4.
    expect(ranks[0].gradientBytes).toBe(4 * (44 + 24 + 72 + 40 + 40 + 44));
  }, 180_000);
});
