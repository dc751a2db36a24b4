/**
 * Runs the ranks of a distributed test as child processes on 127.0.0.1 (support/worker.js
 * against dist/), each with a hard time limit, and collects what each printed. Every child is
 * killed when its limit passes or the test file ends, so none is left behind.
 */
import { ChildProcess, spawn } from "child_process";
import * as net from "net";
import * as path from "path";
import { ensureBuilt } from "../../cli/run-cli";

export const ROOT = path.resolve(__dirname, "../../..");
export const WORKER = path.join(__dirname, "worker.js");

/** One rank's outcome. */
export interface RankOutcome<T> {
  rank: number;
  status: number | null;
  signal: NodeJS.Signals | null;
  /** The JSON line the worker printed last (null when it printed none). */
  result: (T & { ok: boolean; name?: string; message?: string }) | null;
  stderr: string;
  stdout: string;
  /** Milliseconds from spawn to exit. */
  ms: number;
}

const live = new Set<ChildProcess>();

/** Kills every child still running (call in afterAll). */
export function killAll(): void {
  for (const c of live) c.kill("SIGKILL");
  live.clear();
}

/** Builds dist/ when lib/ changed since (the workers run the built package). */
export function prepare(): void {
  ensureBuilt();
}

/** A TCP port that was free a moment ago on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** Runs one process with `env` added; resolves with its outcome once it exits or is killed after `limitMs`. */
export function runProcess<T>(args: string[], env: Record<string, string>, limitMs: number, rank = 0): Promise<RankOutcome<T>> {
  const started = Date.now();
  const child = spawn(process.execPath, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  live.add(child);
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (d) => (stdout += d));
  child.stderr!.on("data", (d) => (stderr += d));
  const timer = setTimeout(() => child.kill("SIGKILL"), limitMs);
  return new Promise((resolve) => {
    child.on("close", (status, signal) => {
      clearTimeout(timer);
      live.delete(child);
      const last = stdout.trim().split("\n").pop() ?? "";
      let result: RankOutcome<T>["result"] = null;
      try {
        result = JSON.parse(last);
      } catch {
        result = null;
      }
      resolve({ rank, status, signal, result, stderr, stdout, ms: Date.now() - started });
    });
  });
}

/**
 * Starts `worldSize` ranks of worker.js with `task`, torchrun's variables and a free port;
 * `perRank` adds or overrides variables of one rank. Resolves with the outcomes, by rank.
 */
export async function runRanks<T>(
  worldSize: number,
  task: Record<string, unknown>,
  options: { limitMs?: number; perRank?: (rank: number) => Record<string, string>; port?: number } = {},
): Promise<RankOutcome<T>[]> {
  const port = options.port ?? (await freePort());
  const runs = Array.from({ length: worldSize }, (_, rank) =>
    runProcess<T>(
      [WORKER],
      {
        RANK: String(rank),
        LOCAL_RANK: String(rank),
        WORLD_SIZE: String(worldSize),
        MASTER_ADDR: "127.0.0.1",
        MASTER_PORT: String(port),
        OMP_NUM_THREADS: "1",
        TL_TEST: JSON.stringify(task),
        ...(options.perRank?.(rank) ?? {}),
      },
      options.limitMs ?? 90_000,
      rank,
    ),
  );
  return Promise.all(runs);
}

/** A readable account of the outcomes, for assertion messages. */
export function describeOutcomes(outcomes: RankOutcome<unknown>[]): string {
  return outcomes
    .map((o) => `rank ${o.rank}: status ${o.status} signal ${o.signal} ${o.ms} ms result ${JSON.stringify(o.result)?.slice(0, 400)}\n${o.stderr.slice(-800)}`)
    .join("\n");
}
