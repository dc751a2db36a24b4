/**
 * What goes wrong across processes gives a clear error, within bounded time, and no process is
 * left hanging: a port already in use, a world size that differs between processes, a rank that
 * never joins, a rank that dies mid-training, adapters that differ between ranks.
 */
import * as net from "net";
import { dist } from "../../lib";
import { describeOutcomes, freePort, killAll, prepare, runRanks } from "./support/ranks";

const gloo = dist.isAvailable("gloo");
if (!gloo) console.warn("skipped: this addon was built without Gloo (install libgloo-dev and rebuild)");
const itGloo = gloo ? it : it.skip;

beforeAll(prepare, 300_000);
afterAll(killAll);

describe("failures across processes (Gloo, 127.0.0.1)", () => {
  itGloo("a port already in use: rank 0 says it cannot serve the rendezvous there and names MASTER_PORT", async () => {
    const port = await freePort();
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(port, "0.0.0.0", resolve));
    try {
      const [r0] = await runRanks(1, { mode: "init", timeoutMs: 5000 }, { port, perRank: () => ({ WORLD_SIZE: "2" }) });
      expect(r0.result).toMatchObject({ ok: false, name: "DistributedError" });
      expect(r0.result!.message).toMatch(new RegExp(`rank 0 could not serve the rendezvous on 127\\.0\\.0\\.1:${port}: .*Address already in use.*choose another MASTER_PORT`));
    } finally {
      blocker.close();
    }
  }, 60_000);

  itGloo("a world size that differs between processes: every rank says which rank disagrees, long before the timeout", async () => {
    const outcomes = await runRanks(2, { mode: "init", timeoutMs: 60_000, worldSize: [2, 3] });
    for (const o of outcomes) {
      expect(o.result).toMatchObject({ ok: false, name: "ConfigError" });
      const [mine, theirs] = o.rank === 0 ? [2, 3] : [3, 2];
      expect(o.result!.message).toBe(
        `initProcessGroup: world size mismatch: this process (rank ${o.rank}) has worldSize ${mine}, but rank ${1 - o.rank} has ${theirs}; every process must be started with the same WORLD_SIZE`,
      );
      expect(o.ms).toBeLessThan(30_000); // the timeout is 60 s: the mismatch was seen at once
    }
  }, 90_000);

  itGloo("a rank that never joins: the others time out naming the missing rank", async () => {
    const outcomes = await runRanks(2, { mode: "init", timeoutMs: 3000 }, { perRank: () => ({ WORLD_SIZE: "3" }) });
    const r0 = outcomes[0].result!;
    expect(r0).toMatchObject({ ok: false, name: "DistributedError" });
    expect(r0.message).toMatch(/timed out after 3000 ms waiting for rank 2 to join \(world size 3\)/);
    // Rank 1 either times out the same way or loses the rendezvous when rank 0 gives up first.
    expect(outcomes[1].result).toMatchObject({ ok: false, name: "DistributedError" });
    expect(outcomes[1].result!.message).toMatch(/rank 2 to join|rendezvous served by rank 0/);
  }, 60_000);

  itGloo("two processes with the same rank: the later one is refused, the group forms without it", async () => {
    // The group holds its store for 15 s, so the duplicate meets it however late it starts.
    const outcomes = await runRanks(3, { mode: "init", timeoutMs: 30_000, holdMs: 15_000 }, { perRank: (r) => ({ RANK: String(Math.min(r, 1)), WORLD_SIZE: "2" }) });
    const refused = outcomes.filter((o) => o.result?.ok === false);
    if (refused.length !== 1) throw new Error(describeOutcomes(outcomes));
    expect(refused[0].result).toMatchObject({ name: "ConfigError", message: "initProcessGroup: rank 1 was taken by 2 processes; every process needs its own RANK" });
    expect(outcomes.filter((o) => o.result?.ok === true).map((o) => o.result)).toEqual([expect.objectContaining({ size: 2 }), expect.objectContaining({ size: 2 })]);
  }, 90_000);

  itGloo("a rank that dies during training: the others fail with a clear error well within the timeout", async () => {
    const timeoutMs = 60_000;
    const outcomes = await runRanks(3, { mode: "die", die: true, dieAt: 1, steps: 3, timeoutMs });
    expect(outcomes[1].status).toBe(3);
    for (const o of [outcomes[0], outcomes[2]]) {
      if (!o.result) throw new Error(describeOutcomes(outcomes));
      expect(o.result).toMatchObject({ ok: false, name: "DistributedError" });
      expect(o.result.message).toMatch(new RegExp(`^gradient all-reduce failed on rank ${o.rank} of 3 \\(gloo\\): .*A peer process may have exited`));
      expect(o.status).toBe(0); // the worker caught the error and exited by itself: nothing hung
      expect(o.ms).toBeLessThan(timeoutMs);
    }
  }, 120_000);

  itGloo("adapters of different shapes on different ranks: DataParallel refuses on every rank", async () => {
    const outcomes = await runRanks(2, { mode: "train", steps: 1, rankR: [4, 2] });
    for (const o of outcomes) {
      expect(o.result).toMatchObject({ ok: false, name: "ConfigError" });
      expect(o.result!.message).toBe(
        "DataParallel: the trainable parameters differ across ranks: rank 1 has 6 tensors (132 values), rank 0 has 6 tensors (264 values). " +
          "Every rank must build the same model and inject the same adapters",
      );
    }
  }, 90_000);
});
