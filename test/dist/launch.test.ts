/**
 * `torch-lora launch`: torchrun's environment for every local rank, real training collectives
 * through it, and failure propagation (a rank that fails stops the others; the launch exits
 * with its code, without waiting for them).
 */
import * as path from "path";
import { dist } from "../../lib";
import { CLI } from "../cli/run-cli";
import { describeOutcomes, freePort, killAll, prepare, runProcess } from "./support/ranks";

const LAUNCHED = path.join(__dirname, "support/launched.js");
const WORKER = path.join(__dirname, "support/worker.js");
const itGloo = dist.isAvailable("gloo") ? it : it.skip;

beforeAll(prepare, 300_000);
afterAll(killAll);

function jsonLines(text: string): Record<string, unknown>[] {
  return text.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("torch-lora launch", () => {
  it("sets RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, GROUP_RANK, MASTER_ADDR, MASTER_PORT (and OMP_NUM_THREADS=1) as torchrun does", async () => {
    const env = { OMP_NUM_THREADS: "" }; // unset
    const run = await runProcess(
      [CLI, "launch", "--nproc-per-node", "3", "--nnodes", "2", "--node-rank", "1", "--master-addr", "10.1.2.3", "--master-port", "4321", LAUNCHED, "--lr", "3"],
      env,
      60_000,
    );
    expect(run.status).toBe(0);
    const lines = jsonLines(run.stdout ?? "");
    const byRank = lines.sort((a, b) => Number(a.RANK) - Number(b.RANK));
    expect(byRank.map((l) => [l.RANK, l.LOCAL_RANK, l.WORLD_SIZE, l.LOCAL_WORLD_SIZE, l.GROUP_RANK, l.MASTER_ADDR, l.MASTER_PORT])).toEqual([
      ["3", "0", "6", "3", "1", "10.1.2.3", "4321"],
      ["4", "1", "6", "3", "1", "10.1.2.3", "4321"],
      ["5", "2", "6", "3", "1", "10.1.2.3", "4321"],
    ]);
    for (const l of lines) {
      expect(l.args).toEqual(["--lr", "3"]); // options after the script are the script's
      expect(l.OMP_NUM_THREADS).toBe("1");
    }
  }, 90_000);

  it("rankEnvironment: OMP_NUM_THREADS=1 with several processes unless the user set it", () => {
    const { rankEnvironment } = require("../../lib/dist/launch");
    const o = { nprocPerNode: 2, nnodes: 1, nodeRank: 0, masterAddr: "127.0.0.1", masterPort: 29500 };
    expect(rankEnvironment({}, o, 1)).toMatchObject({ RANK: "1", LOCAL_RANK: "1", WORLD_SIZE: "2", OMP_NUM_THREADS: "1" });
    expect(rankEnvironment({ OMP_NUM_THREADS: "4" }, o, 0).OMP_NUM_THREADS).toBe("4");
    expect(rankEnvironment({}, { ...o, nprocPerNode: 1 }, 0).OMP_NUM_THREADS).toBeUndefined();
  });

  itGloo("runs a data-parallel job: the ranks it starts join one process group", async () => {
    const port = await freePort();
    const run = await runProcess([CLI, "launch", "--nproc-per-node", "2", "--master-port", String(port), WORKER], { TL_TEST: JSON.stringify({ mode: "collectives" }) }, 90_000);
    if (run.status !== 0) throw new Error(describeOutcomes([run]));
    const results = jsonLines(run.stdout ?? "");
    expect(results).toHaveLength(2);
    for (const r of results) expect(r).toMatchObject({ ok: true, size: 2, sum: [3, 30, -1] });
  }, 120_000);

  it("a rank that fails stops the others and the launch exits with its code", async () => {
    const run = await runProcess([CLI, "launch", "--nproc-per-node", "3", LAUNCHED], { TL_LAUNCHED: "fail" }, 50_000);
    expect(run.signal).toBeNull(); // not killed by the test's limit: the launcher ended by itself
    expect(run.status).toBe(7);
    expect(run.stderr).toMatch(/rank 1 \(local rank 1, pid \d+\) exited with code 7; stopping the other 2 ranks on this node/);
    const pids = jsonLines(run.stdout ?? "").map((l) => l.pid as number);
    expect(pids).toHaveLength(3);
    for (const pid of pids) expect(alive(pid)).toBe(false);
  }, 60_000);

  it("bad usage: a clear message and exit code 1", async () => {
    const noProc = await runProcess([CLI, "launch", LAUNCHED], {}, 30_000);
    expect(noProc.status).toBe(1);
    expect(noProc.stderr).toMatch(/required option '--nproc-per-node <n>' not specified/);
    const badN = await runProcess([CLI, "launch", "--nproc-per-node", "0", LAUNCHED], {}, 30_000);
    expect(badN.status).toBe(1);
    expect(badN.stderr).toMatch(/--nproc-per-node: expected an integer >= 1, got "0"/);
    const badRank = await runProcess([CLI, "launch", "--nproc-per-node", "1", "--nnodes", "2", "--node-rank", "2", LAUNCHED], {}, 30_000);
    expect(badRank.stderr).toMatch(/nodeRank: expected an integer in \[0, 1\] \(nnodes 2\), got 2/);
    const missing = await runProcess([CLI, "launch", "--nproc-per-node", "1", "/nonexistent/train.js"], {}, 30_000);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toMatch(/script: the string "\/nonexistent\/train.js" does not exist/);
  }, 60_000);
});
