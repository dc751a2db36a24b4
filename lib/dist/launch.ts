/**
 * The runtime of `torch-lora launch`: starts one Node process per local rank with torchrun's
 * environment (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, GROUP_RANK, MASTER_ADDR,
 * MASTER_PORT) and supervises them: when one fails, the others are stopped and the launch fails
 * with its exit code, so a job never hangs on a dead rank.
 */
import { ChildProcess, spawn } from "child_process";
import * as fs from "fs";
import { ConfigError, describe } from "../errors";
import { integerSetting, portSetting } from "./init-method";

/** Options of {@link launch}. */
export interface LaunchOptions {
  /** Processes on this machine (one per GPU on a multi-GPU machine). */
  nprocPerNode: number;
  /** Machines in the job (default 1). */
  nnodes?: number;
  /** This machine's index in [0, nnodes) (default 0); node 0 hosts rank 0 and the rendezvous. */
  nodeRank?: number;
  /** Address of node 0, reachable from every node (default 127.0.0.1). */
  masterAddr?: string;
  /** A free TCP port on node 0 (default 29500, as torchrun). */
  masterPort?: number;
  /** The script each process runs. */
  script: string;
  /** Arguments after the script. */
  args?: string[];
  /** Node options before the script (`--enable-source-maps`, `-r ts-node/register`, ...). */
  nodeArgs?: string[];
  /** The environment to start from (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** How long a stopped rank gets between SIGTERM and SIGKILL, in ms (default 5000). */
  killGraceMs?: number;
  /** Where the launcher reports (default process.stderr). */
  log?: (line: string) => void;
}

/** How a launch ended. */
export interface LaunchResult {
  /** 0 when every rank exited with 0; else the failed rank's exit code (128 + signal number when it was killed). */
  exitCode: number;
  /** The global rank that failed first, if any. */
  failedRank?: number;
  /** Why it failed, in words. */
  reason?: string;
}

const SIGNALS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGABRT: 6, SIGKILL: 9, SIGSEGV: 11, SIGPIPE: 13, SIGTERM: 15 };

/** The environment of local rank `local` (torchrun's variable names and meanings). */
export function rankEnvironment(base: NodeJS.ProcessEnv, o: Required<Pick<LaunchOptions, "nprocPerNode" | "nnodes" | "nodeRank" | "masterAddr" | "masterPort">>, local: number): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...base,
    RANK: String(o.nodeRank * o.nprocPerNode + local),
    LOCAL_RANK: String(local),
    GROUP_RANK: String(o.nodeRank),
    LOCAL_WORLD_SIZE: String(o.nprocPerNode),
    WORLD_SIZE: String(o.nnodes * o.nprocPerNode),
    MASTER_ADDR: o.masterAddr,
    MASTER_PORT: String(o.masterPort),
  };
  // As torchrun: several processes on one machine each running a full-size thread pool would
  // oversubscribe its cores; libtorch reads OMP_NUM_THREADS when it starts.
  if (o.nprocPerNode > 1 && !base.OMP_NUM_THREADS) env.OMP_NUM_THREADS = "1";
  return env;
}

/** Checked launch options with their defaults. */
function checkOptions(options: LaunchOptions) {
  const nprocPerNode = integerSetting(options.nprocPerNode, "nprocPerNode", 1);
  const nnodes = integerSetting(options.nnodes ?? 1, "nnodes", 1);
  const nodeRank = integerSetting(options.nodeRank ?? 0, "nodeRank", 0);
  if (nodeRank >= nnodes) throw new ConfigError(`nodeRank: expected an integer in [0, ${nnodes - 1}] (nnodes ${nnodes}), got ${nodeRank}`);
  const masterAddr = options.masterAddr ?? "127.0.0.1";
  if (typeof masterAddr !== "string" || masterAddr === "") throw new ConfigError(`masterAddr: expected a host name or address, got ${describe(masterAddr)}`);
  const masterPort = portSetting(options.masterPort ?? 29500, "masterPort");
  if (typeof options.script !== "string" || !fs.existsSync(options.script)) throw new ConfigError(`script: ${describe(options.script)} does not exist`);
  const killGraceMs = integerSetting(options.killGraceMs ?? 5000, "killGraceMs", 0);
  return { nprocPerNode, nnodes, nodeRank, masterAddr, masterPort, killGraceMs };
}

/**
 * Runs `script` in `nprocPerNode` processes with torchrun's environment and resolves when all
 * have exited. The first rank to fail (non-zero exit or a signal) stops the others (SIGTERM,
 * then SIGKILL after `killGraceMs`); SIGINT/SIGTERM sent to the launcher are passed on to them.
 */
export function launch(options: LaunchOptions): Promise<LaunchResult> {
  const o = checkOptions(options);
  const log = options.log ?? ((line: string) => process.stderr.write(`torch-lora launch: ${line}\n`));
  const base = options.env ?? process.env;
  if (o.nprocPerNode > 1 && !base.OMP_NUM_THREADS) {
    log(`OMP_NUM_THREADS=1 in each of the ${o.nprocPerNode} processes (set OMP_NUM_THREADS to choose another value)`);
  }
  return new Promise((resolve) => {
    const children: (ChildProcess | null)[] = [];
    let failure: LaunchResult | null = null;
    let running = 0;
    let killTimer: NodeJS.Timeout | null = null;

    const stopOthers = (signal: NodeJS.Signals): void => {
      for (const c of children) if (c && c.exitCode === null && c.signalCode === null) c.kill(signal);
      if (killTimer === null) {
        killTimer = setTimeout(() => {
          for (const c of children) if (c && c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
        }, o.killGraceMs);
        killTimer.unref();
      }
    };
    const forward = (signal: NodeJS.Signals) => () => {
      failure ??= { exitCode: 128 + (SIGNALS[signal] ?? 1), reason: `the launcher received ${signal}` };
      stopOthers(signal);
    };
    const onInt = forward("SIGINT");
    const onTerm = forward("SIGTERM");
    process.on("SIGINT", onInt);
    process.on("SIGTERM", onTerm);

    for (let local = 0; local < o.nprocPerNode; local++) {
      const rank = o.nodeRank * o.nprocPerNode + local;
      const child = spawn(process.execPath, [...(options.nodeArgs ?? []), options.script, ...(options.args ?? [])], {
        stdio: "inherit",
        env: rankEnvironment(base, o, local),
      });
      children.push(child);
      running++;
      child.on("error", (err) => log(`rank ${rank}: ${err.message}`));
      child.on("exit", (code, signal) => {
        running--;
        const failed = signal !== null || (code !== null && code !== 0);
        if (failed && failure === null) {
          const how = signal !== null ? `was killed by ${signal}` : `exited with code ${code}`;
          failure = { exitCode: signal !== null ? 128 + (SIGNALS[signal] ?? 1) : (code as number), failedRank: rank, reason: `rank ${rank} (local rank ${local}, pid ${child.pid}) ${how}` };
          const others = children.filter((c) => c && c !== child && c.exitCode === null && c.signalCode === null).length;
          log(`${failure.reason}; stopping the other ${others} rank${others === 1 ? "" : "s"} on this node`);
          stopOthers("SIGTERM");
        }
        if (running === 0) {
          if (killTimer) clearTimeout(killTimer);
          process.off("SIGINT", onInt);
          process.off("SIGTERM", onTerm);
          resolve(failure ?? { exitCode: 0 });
        }
      });
    }
  });
}
