/**
 * Collectives across 2 and 3 processes over Gloo on 127.0.0.1, checked against hand-computed
 * values. Rank r contributes values built from r (see support/worker.js, mode "collectives").
 */
import { dist } from "../../lib";
import { describeOutcomes, killAll, prepare, runRanks } from "./support/ranks";

const gloo = dist.isAvailable("gloo");
if (!gloo) console.warn("skipped: this addon was built without Gloo (install libgloo-dev and rebuild)");
const itGloo = gloo ? it : it.skip;

interface Collectives {
  sum: number[];
  avg: number[];
  max: number[];
  broadcast: number[];
  allGather: number[][];
  reduceScatter: number[];
  product: number[];
  size: number;
}

// Worked out by hand from worker.js's inputs.
const EXPECTED: Record<number, { common: Omit<Collectives, "reduceScatter" | "size">; reduceScatter: number[][] }> = {
  // sum of [r+1, 10(r+1), -r]; avg of [r+1, 2r]; max of [r, -r, 5]; broadcast from the last rank;
  // allGather of [r, r²]; reduceScatter: rank r gets Σ_k [k + r, 100k]; product of [r+1, 7].
  2: {
    common: { sum: [3, 30, -1], avg: [1.5, 1], max: [1, 0, 5], broadcast: [1, 1, 1], allGather: [[0, 0], [1, 1]], product: [2, 49] },
    reduceScatter: [[1, 100], [3, 100]],
  },
  3: {
    common: { sum: [6, 60, -3], avg: [2, 2], max: [2, 0, 5], broadcast: [2, 2, 2], allGather: [[0, 0], [1, 1], [2, 4]], product: [6, 343] },
    reduceScatter: [[3, 300], [6, 300], [9, 300]],
  },
};

beforeAll(prepare, 300_000);
afterAll(killAll);

describe.each([2, 3])("collectives over Gloo, %i processes", (n) => {
  itGloo("allReduce (sum, avg, max, product), broadcast, allGather, reduceScatter and barrier give the hand-computed values on every rank", async () => {
    const outcomes = await runRanks<Collectives>(n, { mode: "collectives" });
    if (outcomes.some((o) => !o.result?.ok)) throw new Error(describeOutcomes(outcomes));
    for (const o of outcomes) {
      expect(o.result?.ok).toBe(true);
      const r = o.result!;
      expect({ sum: r.sum, avg: r.avg, max: r.max, broadcast: r.broadcast, allGather: r.allGather, product: r.product }).toEqual(EXPECTED[n].common);
      expect(r.reduceScatter).toEqual(EXPECTED[n].reduceScatter[o.rank]);
      expect(r.size).toBe(n);
      expect(o.status).toBe(0);
    }
  }, 120_000);
});
