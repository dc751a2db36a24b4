/**
 * Data parallelism over a process group, as PyTorch's DistributedDataParallel does it for the
 * parameters that train: every rank holds the whole model, sees its own part of each batch, and
 * after backward the gradients are averaged across ranks, so every rank takes the same optimizer
 * step. Works on any module's trainable parameters (a LoRA model's adapters, a plain nn.Module).
 */
import { dtypeSize } from "../dtype";
import { DistHandle, native } from "../binding";
import { ConfigError, StateError, describe } from "../errors";
import { Tensor, tensor, optionsObject } from "../tensor";
import { CollectiveOptions, ProcessGroup, defaultProcessGroup } from "./process-group";

/** What DataParallel trains: an object listing its trainable parameters, in the same order on every rank. */
export type ParameterSource = { trainableParameters(): Tensor[] } | { parameters(): Tensor[] };

/** Options of {@link DataParallel.create}. */
export interface DataParallelOptions extends CollectiveOptions {
  /** Upper bound of one gradient bucket (one all-reduce), in MiB of gradient values (default 25, as DDP). */
  bucketCapMb?: number;
  /** The rank whose parameter values every rank starts from (default 0). */
  broadcastFrom?: number;
  /**
   * Start each bucket's all-reduce from autograd hooks while backward is still running, as DDP
   * does (default false). Buckets are then filled in reverse parameter order (the order backward
   * finishes them), and one backward pass must be followed by one syncGradients() (no gradient
   * accumulation over several backward passes). It overlaps only when there are several buckets:
   * a LoRA adapter often fits in one, so choose a smaller bucketCapMb with it.
   */
  overlap?: boolean;
}

/** The trainable parameters of `module`: trainableParameters(), else the parameters that require grad. */
function trainableOf(module: unknown): Tensor[] {
  const m = module as { trainableParameters?: () => unknown; parameters?: () => unknown } | null;
  const list = typeof m?.trainableParameters === "function" ? m.trainableParameters() : typeof m?.parameters === "function" ? m.parameters() : undefined;
  if (!Array.isArray(list)) {
    throw new TypeError(`module: expected an object with trainableParameters() or parameters() returning Tensors, got ${describe(module)}`);
  }
  list.forEach((p, i) => {
    if (!(p instanceof Tensor)) throw new TypeError(`module: parameter ${i} is not a Tensor (${describe(p)})`);
  });
  const params = (typeof m?.trainableParameters === "function" ? list : list.filter((p: Tensor) => p.requiresGrad)) as Tensor[];
  if (params.length === 0) throw new ConfigError("module: has no trainable parameters (none requires grad)");
  return params;
}

/**
 * Consecutive parameters of one dtype and device, each group at most `capBytes` (a parameter
 * larger than the cap gets a bucket of its own). Bucket order is parameter order, the same on
 * every rank, which keeps every rank's sequence of all-reduces alike.
 */
function makeBuckets(params: Tensor[], capBytes: number): Tensor[][] {
  const buckets: Tensor[][] = [];
  let current: Tensor[] = [];
  let bytes = 0;
  for (const p of params) {
    const size = p.numel * dtypeSize(p.dtype);
    const head = current[0];
    if (head && (head.dtype !== p.dtype || head.device !== p.device || bytes + size > capBytes)) {
      buckets.push(current);
      current = [];
      bytes = 0;
    }
    current.push(p);
    bytes += size;
  }
  if (current.length) buckets.push(current);
  return buckets;
}

/** Two 32-bit string hashes (FNV-1a and djb2): equal layouts give equal values on every rank. */
function layoutHash(text: string): [number, number] {
  let fnv = 0x811c9dc5;
  let djb = 5381;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    fnv = Math.imul(fnv ^ c, 0x01000193) >>> 0;
    djb = (Math.imul(djb, 33) + c) >>> 0;
  }
  return [fnv, djb];
}

/**
 * A module trained data-parallel: create it on every rank with {@link DataParallel.create} after
 * `initProcessGroup`, then per step: forward on this rank's part of the batch, backward, `await
 * dp.syncGradients()`, optimizer step. With a mean loss per rank and equal parts, the averaged
 * gradient is the gradient of the mean loss over the whole batch.
 */
export class DataParallel<M extends ParameterSource = ParameterSource> {
  /** The wrapped module. */
  readonly module: M;
  /** The process group the gradients are averaged over. */
  readonly group: ProcessGroup;
  /** The trainable parameters, in the order every rank uses. */
  readonly parameters: readonly Tensor[];
  /** The gradient buckets: one all-reduce each per step. */
  readonly buckets: readonly (readonly Tensor[])[];
  /** True when all-reduces start during backward ({@link DataParallelOptions.overlap}). */
  readonly overlap: boolean;
  /**
   * With `overlap`: how many buckets' all-reduces backward had started when the last
   * syncGradients() began (0 means nothing overlapped; a smaller bucketCapMb gives more buckets).
   */
  startedDuringBackward = 0;
  /** The native hooks of the overlapped mode (null otherwise, or after dispose()). */
  #reducer: DistHandle | null = null;
  #disposed = false;

  private constructor(module: M, group: ProcessGroup, params: Tensor[], buckets: Tensor[][], overlap: boolean) {
    this.module = module;
    this.overlap = overlap;
    this.group = group;
    this.parameters = Object.freeze(params.slice());
    this.buckets = Object.freeze(buckets.map((b) => Object.freeze(b.slice())));
  }

  /**
   * Wraps `module` for data-parallel training: checks that every rank has the same trainable
   * parameters (count, shapes, dtypes; a ConfigError on every rank otherwise), then copies rank
   * `broadcastFrom`'s values into every rank's parameters, so all ranks start alike.
   */
  static async create<M extends ParameterSource>(module: M, options?: DataParallelOptions): Promise<DataParallel<M>> {
    const { dp, src } = DataParallel.#prepare(module, options);
    await dp.#checkLayout(false);
    await Promise.all(dp.buckets.map((b) => dp.group.broadcastFlat(b as Tensor[], src, false)));
    dp.#arm();
    return dp;
  }

  /** {@link create}, waiting on this thread. */
  static createSync<M extends ParameterSource>(module: M, options?: DataParallelOptions): DataParallel<M> {
    const { dp, src } = DataParallel.#prepare(module, options);
    dp.#checkLayout(true);
    for (const b of dp.buckets) dp.group.broadcastFlat(b as Tensor[], src, true);
    dp.#arm();
    return dp;
  }

  static #prepare<M extends ParameterSource>(module: M, options?: DataParallelOptions): { dp: DataParallel<M>; src: number } {
    const opts = optionsObject(options);
    const group = opts.group ?? defaultProcessGroup("DataParallel");
    if (!(group instanceof ProcessGroup)) throw new TypeError(`group: expected a ProcessGroup, got ${describe(group)}`);
    const capMb = opts.bucketCapMb ?? 25;
    if (typeof capMb !== "number" || !(capMb > 0) || !Number.isFinite(capMb)) throw new RangeError(`bucketCapMb: expected a number > 0, got ${describe(capMb)}`);
    const src = opts.broadcastFrom ?? 0;
    if (typeof src !== "number" || !Number.isInteger(src) || src < 0 || src >= group.size) {
      throw new RangeError(`broadcastFrom: expected a rank in [0, ${group.size - 1}], got ${describe(src)}`);
    }
    if (opts.overlap !== undefined && typeof opts.overlap !== "boolean") throw new TypeError(`overlap: expected a boolean, got ${describe(opts.overlap)}`);
    const overlap = opts.overlap ?? false;
    const params = trainableOf(module);
    // Backward finishes the last parameters first: overlapped buckets follow that order.
    const buckets = makeBuckets(overlap ? params.slice().reverse() : params, capMb * 1024 * 1024);
    return { dp: new DataParallel(module, group, params, buckets, overlap), src };
  }

  /** Installs the gradient hooks of the overlapped mode. */
  #arm(): void {
    if (this.overlap) this.#reducer = this.group.newReducer(this.buckets.map((b) => b.slice()));
  }

  /** Ends data-parallel training: removes the gradient hooks of the overlapped mode; syncGradients() then throws. Idempotent. */
  dispose(): void {
    if (this.#reducer) native.distReducerRelease(this.#reducer);
    this.#reducer = null;
    this.#disposed = true;
  }

  #checkLive(): void {
    if (this.#disposed) throw new StateError("syncGradients: this DataParallel was disposed");
  }

  #reducerHandle(): DistHandle {
    this.#checkLive();
    return this.#reducer as DistHandle;
  }

  /** Gathers every rank's parameter layout and throws on every rank when one differs from rank 0's. */
  #checkLayout(sync: boolean): Promise<void> | void {
    const layout = this.parameters.map((p) => `${p.shape.join("x")}:${p.dtype}`).join(",");
    const total = this.parameters.reduce((n, p) => n + p.numel, 0);
    const mine = tensor([this.parameters.length, total, ...layoutHash(layout)], { dtype: "float64" });
    const all = Array.from({ length: this.group.size }, () => tensor([0, 0, 0, 0], { dtype: "float64" }));
    const compare = (): void => {
      const rows = all.map((t) => Array.from(t.toArray() as Float64Array));
      const bad = rows.findIndex((r) => r.some((v, i) => v !== rows[0][i]));
      if (bad === -1) return;
      const [n0, t0] = rows[0];
      const [n, t] = rows[bad];
      const same = n === n0 && t === t0 ? ", with the same counts but different shapes or dtypes" : "";
      throw new ConfigError(
        `DataParallel: the trainable parameters differ across ranks: rank ${bad} has ${n} tensors (${t} values), rank 0 has ${n0} tensors (${t0} values)${same}. ` +
          `Every rank must build the same model and inject the same adapters`,
      );
    };
    if (sync) {
      this.group.allGatherSync(all, mine);
      return compare();
    }
    return this.group.allGather(all, mine).then(compare);
  }

  /**
   * Averages the trainable parameters' gradients across ranks, in place: one flat all-reduce per
   * bucket (gradients flattened, reduced and written back natively), all launched at once (with
   * `overlap`, each as soon as backward has finished it) and
   * waited for on worker threads. A parameter without a gradient on this rank counts as zeros and
   * gets the average as its gradient, so every rank steps alike. Call it after backward and
   * before the optimizer step; leave the gradients alone until it resolves.
   */
  async syncGradients(): Promise<void> {
    if (this.overlap) {
      this.startedDuringBackward = native.distReducerStarted(this.#reducerHandle());
      return this.group.finishReducer(this.#reducerHandle(), false);
    }
    this.#checkLive();
    const divisor = this.group.size;
    await Promise.all(this.buckets.map((b) => this.group.allReduceGradBucket(b as Tensor[], divisor, false)));
  }

  /** {@link syncGradients}, waiting on this thread. */
  syncGradientsSync(): void {
    if (this.overlap) {
      this.startedDuringBackward = native.distReducerStarted(this.#reducerHandle());
      this.group.finishReducer(this.#reducerHandle(), true);
      return;
    }
    this.#checkLive();
    for (const b of this.buckets) this.group.allReduceGradBucket(b as Tensor[], this.group.size, true);
  }

  /** Bytes of gradient values this rank all-reduces per step (the payload; the wire carries about 2·(n−1)/n of it per rank with a ring). */
  get gradientBytes(): number {
    return this.parameters.reduce((n, p) => n + p.numel * dtypeSize(p.dtype), 0);
  }

  /** True on the rank that should save and log (rank 0). */
  get isMainProcess(): boolean {
    return this.group.rank === 0;
  }

  /**
   * Calls the module's `saveAdapter(...args)` on rank 0 only, then waits at a barrier so that no
   * rank reads the files before they are written (rank 0 reaches it even when the save throws). A module without saveAdapter is a TypeError.
   */
  async saveAdapter(...args: unknown[]): Promise<void> {
    const save = (this.module as { saveAdapter?: (...a: unknown[]) => unknown }).saveAdapter;
    if (typeof save !== "function") throw new TypeError("saveAdapter: the wrapped module has no saveAdapter method");
    if (!this.isMainProcess) return this.group.barrier();
    try {
      await save.apply(this.module, args);
    } finally {
      await this.group.barrier(); // the other ranks wait here even when the save failed
    }
  }
}
