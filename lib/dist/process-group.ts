/**
 * Process groups over libtorch's c10d: a TCPStore rendezvous (rank 0 serves it) and a Gloo or
 * NCCL backend, with the collectives PyTorch's torch.distributed offers. Each collective returns a
 * Promise whose waiting happens on a worker thread; the `...Sync` twins wait on the calling thread.
 */
import { DistHandle, native } from "../binding";
import { ConfigError, StateError, describe } from "../errors";
import { Tensor, handleOf, optionsObject } from "../tensor";
import { isFloatingDtype } from "../dtype";
import { DistributedError } from "./errors";
import { Env, integerSetting, isLoopback, resolveRendezvous } from "./init-method";

/** The c10d backends torch-lora can use: Gloo (CPU tensors) and NCCL (CUDA tensors). */
export type Backend = "gloo" | "nccl";

/** How a reduction combines the ranks' values; `avg` is the sum divided by the world size. */
export type ReduceOp = "sum" | "avg" | "max" | "min" | "product";

/** Options of {@link initProcessGroup}. */
export interface InitProcessGroupOptions {
  /** `"gloo"` (default; CPU tensors) or `"nccl"` (CUDA tensors, CUDA builds only). */
  backend?: Backend;
  /** This process's rank in [0, worldSize); default: the RANK environment variable. */
  rank?: number;
  /** Number of processes; default: the WORLD_SIZE environment variable. */
  worldSize?: number;
  /** `"env://"` (default: MASTER_ADDR, MASTER_PORT) or `"tcp://host:port"`: where rank 0 serves the rendezvous. */
  initMethod?: string;
  /** How long the rendezvous and each collective may take, in ms (default 30 minutes, as PyTorch). */
  timeoutMs?: number;
  /** Environment to read instead of process.env (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT, GLOO_SOCKET_IFNAME). */
  env?: Env;
}

/** Options common to collectives. */
export interface CollectiveOptions {
  /** The group to run on (default: the one {@link initProcessGroup} created). */
  group?: ProcessGroup;
}

const DEFAULT_TIMEOUT_MS = 30 * 60 * 1000;
const BACKENDS: readonly Backend[] = ["gloo", "nccl"];
const OPS: readonly ReduceOp[] = ["sum", "avg", "max", "min", "product"];
/** Messages of Gloo/NCCL/TCPStore transport failures (a peer gone, hung or unreachable). */
const PEER_FAILURE = /connection|closed|peer|timed? ?out|timeout|reset|broken pipe|unreachable|refused|EOF/i;

/** The c10d backends compiled into this addon. */
export function availableBackends(): Backend[] {
  return native.distBackends() as Backend[];
}

/** True when `backend` is compiled into this addon (Gloo: Debian's libtorch with libgloo-dev; NCCL: CUDA builds). */
export function isAvailable(backend: Backend = "gloo"): boolean {
  return availableBackends().includes(backend);
}

/** What to install for a backend that is not compiled in. */
function howToGet(backend: Backend): string {
  return backend === "gloo"
    ? "Gloo needs c10d's Gloo headers and gloo's own: on Debian/Ubuntu `apt-get install libgloo-dev` (with libtorch-dev), or a pip torch / libtorch zip, then rebuild the addon (npm run rebuild)"
    : "NCCL comes with a CUDA build of libtorch (pip torch with CUDA, or a CUDA libtorch zip) and needs the CUDA runtime and NCCL headers (CUDA toolkit or the nvidia-* pip packages); rebuild the addon against it (npm run rebuild)";
}

/** A c10d process group: `size` processes that run collectives together. */
export class ProcessGroup {
  #handle: DistHandle | null;
  /** Held, never read: rank 0's rendezvous server must live as long as the group's object. */
  // eslint-disable-next-line no-unused-private-class-members -- held for its lifetime, not read
  readonly #store: DistHandle;
  /** This process's rank. */
  readonly rank: number;
  /** Number of processes. */
  readonly size: number;
  /** The backend. */
  readonly backend: Backend;
  /** The timeout of each collective, in ms. */
  readonly timeoutMs: number;

  /** @internal Use {@link initProcessGroup}. */
  constructor(handle: DistHandle, store: DistHandle, rank: number, size: number, backend: Backend, timeoutMs: number) {
    this.#handle = handle;
    this.#store = store;
    this.rank = rank;
    this.size = size;
    this.backend = backend;
    this.timeoutMs = timeoutMs;
  }

  /** False once {@link destroy} ran. */
  get alive(): boolean {
    return this.#handle !== null;
  }

  /** @internal The native handle, or a StateError after destroy(). */
  handle(op: string): DistHandle {
    if (this.#handle === null) throw new StateError(`${op}: the process group was destroyed`);
    return this.#handle;
  }

  /** Releases the group; collectives still in flight complete first. Idempotent. */
  destroy(): void {
    if (this.#handle !== null) native.distDestroy(this.#handle);
    this.#handle = null;
  }

  /** Runs a native collective, turning its failure into a DistributedError that says where. */
  #run(op: string, call: (h: DistHandle, sync: boolean) => Promise<void> | undefined, sync: boolean): Promise<void> | undefined {
    const h = this.handle(op);
    const explain = (err: unknown): DistributedError => {
      const msg = (err instanceof Error ? err.message : String(err)).replace(/\.+$/, "");
      // A transport failure means a peer, not this call's arguments: say what to look for.
      const peer = PEER_FAILURE.test(msg)
        ? `. A peer process may have exited, hung past the timeout (${this.timeoutMs} ms) or become unreachable`
        : "";
      return new DistributedError(`${op} failed on rank ${this.rank} of ${this.size} (${this.backend}): ${msg}${peer}`);
    };
    let result: Promise<void> | undefined;
    try {
      result = call(h, sync);
    } catch (err) {
      throw explain(err);
    }
    return result?.catch((err: unknown) => {
      throw explain(err);
    });
  }

  // ---- argument checks (before anything is launched: a bad call changes nothing) ----

  #tensors(value: unknown, arg: string): Tensor[] {
    const list = value instanceof Tensor ? [value] : value;
    if (!Array.isArray(list) || list.length === 0) throw new TypeError(`${arg}: expected a Tensor or a non-empty array of Tensors, got ${describe(value)}`);
    list.forEach((t, i) => {
      if (!(t instanceof Tensor)) throw new TypeError(`${arg}[${i}]: expected a Tensor, got ${describe(t)}`);
      this.#checkDevice(t, `${arg}[${i}]`);
    });
    return list as Tensor[];
  }

  #checkDevice(t: Tensor, arg: string): void {
    const cuda = t.device.startsWith("cuda");
    if (this.backend === "gloo" && cuda) throw new ConfigError(`${arg}: Gloo runs collectives on CPU tensors here, got one on ${t.device}; use the nccl backend for CUDA tensors`);
    if (this.backend === "nccl" && !cuda) throw new ConfigError(`${arg}: NCCL runs collectives on CUDA tensors, got one on ${t.device}; use the gloo backend for CPU tensors`);
  }

  #op(value: unknown, tensors: Tensor[], arg: string): { op: string; divisor: number } {
    const op = value ?? "sum";
    if (!OPS.includes(op as ReduceOp)) throw new ConfigError(`op: expected one of ${OPS.map((o) => `"${o}"`).join(", ")}, got ${describe(op)}`);
    if (op === "avg") {
      tensors.forEach((t, i) => {
        if (!isFloatingDtype(t.dtype)) throw new TypeError(`${arg}[${i}]: op "avg" needs a floating-point tensor, got ${t.dtype}`);
      });
      // Gloo in libtorch 1.13 has no AVG: a sum, divided once the sum arrived.
      return { op: "sum", divisor: this.size };
    }
    return { op: op as string, divisor: 1 };
  }

  #root(value: unknown): number {
    const root = value ?? 0;
    if (typeof root !== "number" || !Number.isInteger(root) || root < 0 || root >= this.size) {
      throw new RangeError(`src: expected a rank in [0, ${this.size - 1}], got ${describe(root)}`);
    }
    return root;
  }

  #sameLayout(t: Tensor, like: Tensor, arg: string, likeArg: string): void {
    if (t.dtype !== like.dtype || t.device !== like.device || t.shape.join() !== like.shape.join()) {
      throw new ConfigError(
        `${arg}: expected shape [${like.shape}] ${like.dtype} on ${like.device} like ${likeArg}, got shape [${t.shape}] ${t.dtype} on ${t.device}`,
      );
    }
  }

  // ---- collectives ----

  #allReduce(tensors: Tensor | Tensor[], options: { op?: ReduceOp } | undefined, sync: boolean): Promise<void> | undefined {
    const list = this.#tensors(tensors, "tensors");
    const { op, divisor } = this.#op(optionsObject(options).op, list, "tensors");
    const handles = list.map((t) => handleOf(t));
    return this.#run("allReduce", (h, s) => native.distAllReduce(h, { tensors: handles, op, divisor, sync: s }), sync);
  }

  /** Reduces `tensors` in place across ranks (`op`: sum (default), avg, max, min, product); every rank gets the result. */
  allReduce(tensors: Tensor | Tensor[], options?: { op?: ReduceOp }): Promise<void> {
    return this.#allReduce(tensors, options, false) as Promise<void>;
  }

  /** {@link allReduce}, waiting on this thread. */
  allReduceSync(tensors: Tensor | Tensor[], options?: { op?: ReduceOp }): void {
    this.#allReduce(tensors, options, true);
  }

  #broadcast(tensors: Tensor | Tensor[], options: { src?: number } | undefined, sync: boolean): Promise<void> | undefined {
    const list = this.#tensors(tensors, "tensors");
    const root = this.#root(optionsObject(options).src);
    const handles = list.map((t) => handleOf(t));
    return this.#run("broadcast", (h, s) => native.distBroadcast(h, { tensors: handles, root, sync: s }), sync);
  }

  /** Copies rank `src`'s (default 0) values into `tensors` on every rank, in place. */
  broadcast(tensors: Tensor | Tensor[], options?: { src?: number }): Promise<void> {
    return this.#broadcast(tensors, options, false) as Promise<void>;
  }

  /** {@link broadcast}, waiting on this thread. */
  broadcastSync(tensors: Tensor | Tensor[], options?: { src?: number }): void {
    this.#broadcast(tensors, options, true);
  }

  #allGather(outputs: Tensor[], input: Tensor, sync: boolean): Promise<void> | undefined {
    const [inp] = this.#tensors(input, "input");
    const outs = this.#tensors(outputs, "outputs");
    if (outs.length !== this.size) throw new RangeError(`outputs: expected ${this.size} tensors (one per rank), got ${outs.length}`);
    outs.forEach((t, i) => this.#sameLayout(t, inp, `outputs[${i}]`, "input"));
    const handles = outs.map((t) => handleOf(t));
    return this.#run("allGather", (h, s) => native.distAllGather(h, { outputs: handles, input: handleOf(inp), sync: s }), sync);
  }

  /** Gathers every rank's `input` into `outputs[rank]` (one tensor per rank, shaped like `input`) on every rank. */
  allGather(outputs: Tensor[], input: Tensor): Promise<void> {
    return this.#allGather(outputs, input, false) as Promise<void>;
  }

  /** {@link allGather}, waiting on this thread. */
  allGatherSync(outputs: Tensor[], input: Tensor): void {
    this.#allGather(outputs, input, true);
  }

  #reduceScatter(output: Tensor, inputs: Tensor[], options: { op?: ReduceOp } | undefined, sync: boolean): Promise<void> | undefined {
    const [out] = this.#tensors(output, "output");
    const ins = this.#tensors(inputs, "inputs");
    if (ins.length !== this.size) throw new RangeError(`inputs: expected ${this.size} tensors (one per rank), got ${ins.length}`);
    ins.forEach((t, i) => this.#sameLayout(t, out, `inputs[${i}]`, "output"));
    const { op, divisor } = this.#op(optionsObject(options).op, [out], "output");
    const handles = ins.map((t) => handleOf(t));
    return this.#run("reduceScatter", (h, s) => native.distReduceScatter(h, { output: handleOf(out), inputs: handles, op, divisor, sync: s }), sync);
  }

  /**
   * Reduces `inputs[r]` across ranks into rank r's `output`. On Gloo (which has no reduce-scatter
   * in libtorch 1.13) it runs as an all-reduce of all inputs, keeping this rank's part.
   */
  reduceScatter(output: Tensor, inputs: Tensor[], options?: { op?: ReduceOp }): Promise<void> {
    return this.#reduceScatter(output, inputs, options, false) as Promise<void>;
  }

  /** {@link reduceScatter}, waiting on this thread. */
  reduceScatterSync(output: Tensor, inputs: Tensor[], options?: { op?: ReduceOp }): void {
    this.#reduceScatter(output, inputs, options, true);
  }

  /** Resolves once every rank has reached this barrier. */
  barrier(): Promise<void> {
    return this.#run("barrier", (h, s) => native.distBarrier(h, { sync: s }), false) as Promise<void>;
  }

  /** {@link barrier}, waiting on this thread. */
  barrierSync(): void {
    this.#run("barrier", (h, s) => native.distBarrier(h, { sync: s }), true);
  }

  /** @internal One flat all-reduce of the gradients of `params` (one dtype and device), divided by `divisor`. */
  allReduceGradBucket(params: Tensor[], divisor: number, sync: boolean): Promise<void> | undefined {
    const handles = params.map((p) => handleOf(p));
    return this.#run("gradient all-reduce", (h, s) => native.distAllReduceGrads(h, { params: handles, divisor, sync: s }), sync);
  }

  /** @internal Hooks that all-reduce `buckets` of gradients while backward runs (see native/dist_reducer.cc). */
  newReducer(buckets: Tensor[][]): DistHandle {
    return native.distReducerNew(this.handle("DataParallel"), { buckets: buckets.map((b) => b.map((p) => handleOf(p))) });
  }

  /** @internal Completes a reducer's step: the remaining buckets, the wait, the averages written back. */
  finishReducer(reducer: DistHandle, sync: boolean): Promise<void> | undefined {
    this.handle("syncGradients");
    return this.#run("gradient all-reduce", (_h, s) => native.distReducerFinish(reducer, { divisor: this.size, sync: s }), sync);
  }

  /** @internal One flat broadcast of `tensors` (one dtype and device) from `src`, written back in place. */
  broadcastFlat(tensors: Tensor[], src: number, sync: boolean): Promise<void> | undefined {
    const handles = tensors.map((t) => handleOf(t));
    return this.#run("parameter broadcast", (h, s) => native.distBroadcastFlat(h, { tensors: handles, root: src, sync: s }), sync);
  }
}

let defaultGroup: ProcessGroup | null = null;

/** The checked options of initProcessGroup. */
function checkInitOptions(options: InitProcessGroupOptions): { backend: Backend; timeoutMs: number } {
  const backend = options.backend ?? "gloo";
  if (!BACKENDS.includes(backend)) throw new ConfigError(`backend: expected "gloo" or "nccl", got ${describe(backend)}`);
  if (!isAvailable(backend)) {
    const have = availableBackends();
    throw new ConfigError(
      `backend: "${backend}" is not compiled into this torch-lora addon (compiled in: ${have.length ? have.join(", ") : "none"}). ${howToGet(backend)}`,
    );
  }
  const timeoutMs = options.timeoutMs === undefined ? DEFAULT_TIMEOUT_MS : integerSetting(options.timeoutMs, "timeoutMs", 1);
  return { backend, timeoutMs };
}

/**
 * Joins `worldSize` processes into a process group and makes it the default group. Rank 0
 * serves the rendezvous (a c10d TCPStore) at the address of `initMethod`; every rank checks that
 * all ranks agree on the world size and that no rank is taken twice, then the backend connects
 * its mesh. Resolves once every rank has joined; rejects with a clear error on a port already
 * in use, a world size that differs between processes, a rank that never arrives (after
 * `timeoutMs`), or a backend that is not compiled in.
 */
export async function initProcessGroup(options?: InitProcessGroupOptions): Promise<ProcessGroup> {
  const opts = optionsObject(options);
  if (defaultGroup !== null) throw new StateError("initProcessGroup: a default process group already exists; call destroyProcessGroup() first");
  const { backend, timeoutMs } = checkInitOptions(opts);
  const env = opts.env ?? process.env;
  const { host, port, rank, worldSize } = resolveRendezvous(opts, env);
  const where = `${host}:${port}`;
  let joined: { store: DistHandle; worldSizes: number[]; claims: number };
  try {
    joined = await native.distConnect({ host, port, isServer: rank === 0, rank, worldSize, timeoutMs });
  } catch (err) {
    const msg = (err instanceof Error ? err.message : String(err)).replace(/\.+$/, "");
    if (rank === 0) {
      throw new DistributedError(
        `initProcessGroup: rank 0 could not serve the rendezvous on ${where}: ${msg}. ` +
          `The port may be in use by another job: choose another MASTER_PORT (or tcp:// port)`,
      );
    }
    throw new DistributedError(
      `initProcessGroup: rank ${rank} could not reach, or lost, the rendezvous served by rank 0 at ${where} (timeout ${timeoutMs} ms): ${msg}. ` +
        `Check that rank 0 is running and that MASTER_ADDR/MASTER_PORT (or the tcp:// address) name it`,
    );
  }
  checkHandshake(rank, worldSize, joined, timeoutMs);
  // Gloo binds to the interface named by GLOO_SOCKET_IFNAME, to loopback for a job on this
  // machine alone, else to the address this machine's hostname resolves to.
  const deviceInterface = backend === "gloo" && env.GLOO_SOCKET_IFNAME ? env.GLOO_SOCKET_IFNAME : undefined;
  const deviceHostname = !deviceInterface && isLoopback(host) ? "127.0.0.1" : undefined;
  let handle: DistHandle;
  try {
    handle = await native.distNewGroup({ store: joined.store, backend, rank, worldSize, timeoutMs, deviceHostname, deviceInterface });
  } catch (err) {
    throw new DistributedError(`initProcessGroup: the ${backend} backend could not connect rank ${rank} of ${worldSize}: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (defaultGroup !== null) {
    native.distDestroy(handle);
    throw new StateError("initProcessGroup: another call created the default process group meanwhile");
  }
  defaultGroup = new ProcessGroup(handle, joined.store, rank, worldSize, backend, timeoutMs);
  return defaultGroup;
}

/** Turns the rendezvous handshake's findings into errors every rank can act on. */
function checkHandshake(rank: number, worldSize: number, joined: { worldSizes: number[]; claims: number }, timeoutMs: number): void {
  if (joined.claims > 1) {
    throw new ConfigError(`initProcessGroup: rank ${rank} was taken by ${joined.claims} processes; every process needs its own RANK`);
  }
  const other = joined.worldSizes.findIndex((w) => w !== -1 && w !== worldSize);
  if (other !== -1) {
    throw new ConfigError(
      `initProcessGroup: world size mismatch: this process (rank ${rank}) has worldSize ${worldSize}, but rank ${other} has ${joined.worldSizes[other]}; ` +
        `every process must be started with the same WORLD_SIZE`,
    );
  }
  const missing = joined.worldSizes.flatMap((w, r) => (w === -1 ? [r] : []));
  if (missing.length) {
    throw new DistributedError(
      `initProcessGroup: timed out after ${timeoutMs} ms waiting for rank${missing.length > 1 ? "s" : ""} ${missing.join(", ")} to join (world size ${worldSize}). ` +
        `Start every process, or check WORLD_SIZE`,
    );
  }
}

/** Destroys the default process group (and `group`, when given another). */
export function destroyProcessGroup(group?: ProcessGroup): void {
  const target = group ?? defaultGroup;
  target?.destroy();
  if (target === defaultGroup) defaultGroup = null;
}

/** True once {@link initProcessGroup} created the default group (and it was not destroyed). */
export function isInitialized(): boolean {
  return defaultGroup !== null;
}

/** The default group, or a StateError naming the operation that needed it. */
export function defaultProcessGroup(op = "this operation"): ProcessGroup {
  if (defaultGroup === null) throw new StateError(`${op}: no process group; call await dist.initProcessGroup() first`);
  return defaultGroup;
}

/** This process's rank in the default group (0 without one). */
export function getRank(): number {
  return defaultGroup?.rank ?? 0;
}

/** The default group's size (1 without one). */
export function getWorldSize(): number {
  return defaultGroup?.size ?? 1;
}

/**
 * True on the process that should write files and print progress: rank 0 of the default group,
 * or any process when there is none (a single-process run).
 */
export function isMainProcess(): boolean {
  return getRank() === 0;
}
