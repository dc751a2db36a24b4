/**
 * Where and who: the rendezvous address, rank and world size of a process, from
 * `initProcessGroup`'s options and torchrun's environment variables (MASTER_ADDR, MASTER_PORT,
 * RANK, WORLD_SIZE). All validation and wording of bad values happens here.
 */
import { ConfigError, describe } from "../errors";

/** The resolved rendezvous of one process. */
export interface Rendezvous {
  host: string;
  port: number;
  rank: number;
  worldSize: number;
}

/** Variables read from the environment (process.env by default; tests pass their own). */
export type Env = Record<string, string | undefined>;

/** A non-negative integer from an option or an environment variable, or a ConfigError naming it. */
export function integerSetting(value: unknown, name: string, min: number): number {
  const n = typeof value === "string" && /^\s*-?\d+\s*$/.test(value) ? Number(value) : value;
  if (typeof n !== "number" || !Number.isSafeInteger(n) || n < min) {
    throw new ConfigError(`${name}: expected an integer >= ${min}, got ${describe(value)}`);
  }
  return n;
}

/** A TCP port (1-65535). */
export function portSetting(value: unknown, name: string): number {
  const port = integerSetting(value, name, 1);
  if (port > 65535) throw new ConfigError(`${name}: expected a TCP port (1-65535), got ${port}`);
  return port;
}

/** `tcp://host:port` or `tcp://[ipv6]:port` as host and port. */
function parseTcp(initMethod: string): { host: string; port: number } {
  const m = /^tcp:\/\/(?:\[([^\]]+)\]|([^:/[\]]+)):([^/:]+)\/?$/.exec(initMethod);
  if (!m) throw new ConfigError(`initMethod: expected "env://" or "tcp://host:port", got ${JSON.stringify(initMethod)}`);
  return { host: m[1] ?? m[2], port: portSetting(m[3], "initMethod port") };
}

/**
 * The rendezvous for `initMethod` (`env://` or `tcp://host:port`): rank and world size come from
 * the options when given, else from RANK and WORLD_SIZE; with `env://` the address comes from
 * MASTER_ADDR and MASTER_PORT.
 */
export function resolveRendezvous(options: { initMethod?: string; rank?: number; worldSize?: number }, env: Env = process.env): Rendezvous {
  const initMethod = options.initMethod ?? "env://";
  if (typeof initMethod !== "string") throw new ConfigError(`initMethod: expected "env://" or "tcp://host:port", got ${describe(initMethod)}`);
  let address: { host: string; port: number };
  if (initMethod === "env://") {
    const host = env.MASTER_ADDR;
    if (!host) throw new ConfigError(`initMethod "env://" needs MASTER_ADDR (the address of the rank-0 machine) in the environment, which is not set`);
    if (env.MASTER_PORT === undefined || env.MASTER_PORT === "") {
      throw new ConfigError(`initMethod "env://" needs MASTER_PORT (a free TCP port on the rank-0 machine) in the environment, which is not set`);
    }
    address = { host, port: portSetting(env.MASTER_PORT, "MASTER_PORT") };
  } else {
    address = parseTcp(initMethod);
  }
  const fromEnv = (name: "RANK" | "WORLD_SIZE", option: "rank" | "worldSize"): unknown => {
    if (options[option] !== undefined) return options[option];
    if (env[name] === undefined) throw new ConfigError(`${option}: not given, and ${name} is not set in the environment`);
    return env[name];
  };
  const worldSize = integerSetting(fromEnv("WORLD_SIZE", "worldSize"), options.worldSize !== undefined ? "worldSize" : "WORLD_SIZE", 1);
  const rankName = options.rank !== undefined ? "rank" : "RANK";
  const rank = integerSetting(fromEnv("RANK", "rank"), rankName, 0);
  if (rank >= worldSize) throw new ConfigError(`${rankName}: expected an integer in [0, ${worldSize - 1}] (world size ${worldSize}), got ${rank}`);
  return { ...address, rank, worldSize };
}

/** True for addresses of this machine's loopback interface. */
export function isLoopback(host: string): boolean {
  return host === "localhost" || /^127\.\d+\.\d+\.\d+$/.test(host) || host === "::1";
}
