/**
 * The one place that loads the native addon. Everything else imports `native` from here.
 * When loading fails, the error names the cause and the fix; in an installed package where no
 * prebuilt addon fits, it first builds one from source when a compiler and cmake are there.
 *
 * The boundary rule (docs/native-boundary.md): every entry point is declared once, in
 * `NativeBinding` below; TypeScript owns semantic validation and message wording, C++ checks only
 * what keeps memory safe and converts libtorch errors; more than three arguments: one options object.
 */
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { types } from "util";

const { isNativeError } = types;

/** Opaque handle to a native torch::Tensor. */
export type NativeTensor = { readonly __nativeTensor: unique symbol };
type H = NativeTensor;
type Num = number;

/** Opaque handle to a native c10d store or process group (native/dist.cc). */
export type DistHandle = { readonly __nativeDist: unique symbol };

/** The adapters of one layer for the fused LoRA kernels: an (A, B) pair per adapter in `factors`, its scale in `scales`. */
export interface LoraAdapterOptions {
  factors: H[];
  scales: Num[];
}
/** Options of `loraLinear`: `dropouts` holds one dropout probability per adapter (applied when `training`). */
export interface LoraLinearOptions extends LoraAdapterOptions {
  input: H;
  weight: H;
  bias: H | null;
  fanInFanOut: boolean;
  training: boolean;
  dropouts: Num[];
}
/** Options of `loraEmbedding`. */
export interface LoraEmbeddingOptions extends LoraAdapterOptions {
  ids: H;
  weight: H;
  /** The base layer's padding index, -1 for none. */
  paddingIdx: Num;
}
/** Options of `loraMerge`/`loraMergeAsync`: `keepBackup` returns the pristine weight (the first merge). */
export interface LoraMergeOptions extends LoraAdapterOptions {
  weight: H;
  embedding: boolean;
  fanInFanOut: boolean;
  safe: boolean;
  keepBackup: boolean;
}
/** Options of `loraDoraMerge`/`loraDoraMergeAsync`: one DoRA adapter into its weight, as `loraMerge` takes them. */
export interface DoraMergeOptions {
  weight: H;
  A: H;
  B: H;
  magnitude: H;
  scale: Num;
  fanInFanOut: boolean;
  embedding: boolean;
  safe: boolean;
  keepBackup: boolean;
}

/** What `buildInfo()` reports: every field native/addon.cc sets (scripts/lib/prebuilds.js reads them too). */
export interface BuildInfo {
  /** The libtorch the addon was linked against, as scripts/gyp-torch.js describes it. */
  builtWith: string;
  torchVersion: string;
  cudaAvailable: boolean;
  cudaDeviceCount: Num;
  cxx11Abi: boolean;
  /** The c10d backends compiled in (native/dist.cc). */
  distBackends: string[];
  /** True for a build against Node's experimental Node-API (GC-time finalizers). */
  napiExperimental: boolean;
  /** The Node whose headers an experimental build was compiled against (absent in a stable build). */
  nodeVersion?: string;
  /** The Node-API version declared: 8 for a stable build, 2147483647 for an experimental one. */
  napiVersion: Num;
}

/** The adapters of one layer for a mixed batch: (A, B) pairs, scales, and each row's adapter index (-1: none). */
export interface MixedAdapterOptions {
  factors: H[];
  scales: Num[];
  rows: Num[];
}
/** Options of `loraMixedLinear`. */
export interface MixedLinearOptions extends MixedAdapterOptions {
  input: H;
  weight: H;
  bias: H | null;
  fanInFanOut: boolean;
}
/** Options of `loraMixedEmbedding`. */
export interface MixedEmbeddingOptions extends MixedAdapterOptions {
  ids: H;
  weight: H;
  paddingIdx: Num;
}

/**
 * The native surface, declared once: every entry point the addon exports, grouped by the native
 * file that registers it (test/core/native-surface.test.ts compares this list with the addon's
 * exports both ways). The rule at the boundary (docs/native-boundary.md): TypeScript owns semantic
 * validation and message wording; C++ checks only what keeps memory safe and converts libtorch
 * errors; an entry point with more than three arguments takes one named options object.
 */
export interface NativeBinding {
  // build description (native/addon.cc)
  buildInfo(): BuildInfo;
  // creation and data
  fromTypedArray(options: { data: ArrayBufferView; shape: Num[]; dtype: string; device: string; requiresGrad: boolean }): H;
  fromBytes(options: { bytes: Uint8Array; shape: Num[]; dtype: string; device: string }): H;
  toBytes(t: H): Buffer;
  toArray(t: H): Float32Array | Float64Array | Int32Array | Uint8Array | BigInt64Array;
  item(t: H): number;
  /** `fill` is read for kind "full" only. */
  factory(options: { kind: string; shape: Num[]; dtype: string; device: string; requiresGrad: boolean; fill?: Num }): H;
  arange(options: { start: Num; end: Num; step: Num; dtype: string; device: string; requiresGrad: boolean }): H;
  meta(t: H): [Num[], string, string, boolean, boolean];
  shape(t: H): Num[];
  dtype(t: H): string;
  device(t: H): string;
  numel(t: H): number;
  /** libtorch's version counter of the tensor's memory: moved on by every in-place write. */
  version(t: H): Num;
  to(t: H, dtype: string | null, device: string | null): H;
  dispose(t: H): void;
  isDisposed(t: H): boolean;
  memoryStats(): { liveTensors: Num; liveBytes: Num };
  /** Scopes: stop/resume reporting new tensors' bytes to V8 on this thread; returns the previous setting. */
  pauseExternalMemoryReports(paused: boolean): boolean;
  /** Reports a tensor created while reports were paused (it outlives its scope). */
  reportExternalMemory(t: H): void;
  /** Bytes of external memory V8 counts for this isolate (what the collector's heuristics see). */
  reportedExternalMemory(): number;
  // ops
  neg(t: H): H;
  relu(t: H): H;
  gelu(t: H): H;
  tanh(t: H): H;
  sigmoid(t: H): H;
  exp(t: H): H;
  log(t: H): H;
  sqrt(t: H): H;
  abs(t: H): H;
  clone(t: H): H;
  detach(t: H): H;
  contiguous(t: H): H;
  t(t: H): H;
  isfinite(t: H): H;
  allFinite(t: H): H;
  add(a: H, b: H | Num): H;
  sub(a: H, b: H | Num): H;
  mul(a: H, b: H | Num): H;
  div(a: H, b: H | Num): H;
  pow(a: H, b: H | Num): H;
  eq(a: H, b: H | Num): H;
  gt(a: H, b: H | Num): H;
  lt(a: H, b: H | Num): H;
  maximum(a: H, b: H | Num): H;
  matmul(a: H, b: H): H;
  transpose(t: H, d0: Num, d1: Num): H;
  reshape(t: H, shape: Num[]): H;
  view(t: H, shape: Num[]): H;
  indexSelect(t: H, dim: Num, index: H): H;
  narrow(t: H, options: { dim: Num; start: Num; length: Num }): H;
  cat(ts: H[], dim: Num): H;
  sum(t: H, dims: Num[] | null, keepdim: boolean): H;
  mean(t: H, dims: Num[] | null, keepdim: boolean): H;
  max(t: H, dim: Num | null, keepdim: boolean): H;
  argmax(t: H, dim: Num | null, keepdim: boolean): H;
  softmax(t: H, dim: Num): H;
  logSoftmax(t: H, dim: Num): H;
  dropout(t: H, p: Num, train: boolean): H;
  crossEntropy(options: { input: H; target: H; reduction: string; ignoreIndex: Num; labelSmoothing: Num }): H;
  mseLoss(input: H, target: H, reduction: string): H;
  /** cross_entropy(linear(hidden, weight, bias), target), mean over non-ignored targets, logits chunk by chunk. */
  linearCrossEntropy(options: { hidden: H; weight: H; bias: H | null; target: H; ignoreIndex: Num; chunkRows: Num }): H;
  allclose(a: H, b: H, options: { rtol: Num; atol: Num }): boolean;
  equal(a: H, b: H): boolean;
  copyInto(dst: H, src: H): H;
  linear(x: H, weight: H, bias: H | null): H;
  linearInOut(x: H, weight: H, bias: H | null): H;
  // more elementwise ops, shape, indexing and in-place ops (native/ops*.cc)
  rsqrt(t: H): H;
  sin(t: H): H;
  cos(t: H): H;
  silu(t: H): H;
  ne(a: H, b: H | Num): H;
  ge(a: H, b: H | Num): H;
  le(a: H, b: H | Num): H;
  minimum(a: H, b: H | Num): H;
  bmm(a: H, b: H): H;
  permute(t: H, dims: Num[]): H;
  unsqueeze(t: H, dim: Num): H;
  squeeze(t: H, dim: Num | null): H;
  flatten(t: H, startDim: Num, endDim: Num): H;
  expand(t: H, shape: Num[]): H;
  stack(ts: H[], dim: Num): H;
  split(t: H, splitSizeOrSections: Num | Num[], dim: Num): H[];
  chunk(t: H, chunks: Num, dim: Num): H[];
  slice(t: H, options: { dim: Num; start: Num | null; end: Num | null; step: Num }): H;
  where(condition: H, input: H | Num, other: H | Num): H;
  maskedFill(t: H, mask: H, value: H | Num): H;
  triu(t: H, diagonal: Num): H;
  tril(t: H, diagonal: Num): H;
  gather(t: H, dim: Num, index: H): H;
  scatterAdd(t: H, options: { dim: Num; index: H; src: H }): H;
  indexAdd(t: H, options: { dim: Num; index: H; source: H; alpha: Num }): H;
  oneHot(t: H, numClasses: Num): H;
  topk(t: H, options: { k: Num; dim: Num; largest: boolean; sorted: boolean }): [H, H];
  sort(t: H, options: { dim: Num; descending: boolean; stable: boolean }): [H, H];
  multinomial(t: H, numSamples: Num, replacement: boolean): H;
  clamp(t: H, min: H | Num | null, max: H | Num | null): H;
  var(t: H, options: { dim: Num[] | null; correction: Num; keepdim: boolean }): H;
  std(t: H, options: { dim: Num[] | null; correction: Num; keepdim: boolean }): H;
  logsumexp(t: H, dims: Num[], keepdim: boolean): H;
  cumsum(t: H, dim: Num): H;
  add_(t: H, other: H | Num, alpha: Num): H;
  mul_(t: H, other: H | Num): H;
  copy_(t: H, src: H): H;
  zero_(t: H): H;
  embedding(ids: H, weight: H, paddingIdx: Num): H;
  // autograd
  setRequiresGrad(t: H, flag: boolean): void;
  grad(t: H): H | null;
  clearGrad(t: H): void;
  backward(t: H, gradient: H | null, retainGraph: boolean): void;
  setGradEnabled(flag: boolean): boolean;
  isGradEnabled(): boolean;
  // init
  initNormal(t: H, mean: Num, std: Num): H;
  initUniform(t: H, a: Num, b: Num): H;
  initConstant(t: H, value: Num): H;
  initZeros(t: H): H;
  initOnes(t: H): H;
  initKaimingUniform(t: H, options: { a: Num; mode: string; nonlinearity: string }): H;
  initKaimingNormal(t: H, options: { a: Num; mode: string; nonlinearity: string }): H;
  initXavierUniform(t: H, gain: Num): H;
  initXavierNormal(t: H, gain: Num): H;
  initOrthogonal(t: H, gain: Num): H;
  manualSeed(seed: Num): void;
  // normalization, attention and activations of the nn modules
  layerNorm(options: { input: H; normalizedShape: Num[]; weight: H | null; bias: H | null; eps: Num }): H;
  rmsNorm(options: { input: H; normalizedShape: Num[]; weight: H | null; eps: Num }): H;
  scaledDotProductAttention(options: { query: H; key: H; value: H; mask: H | null; causal: boolean; dropoutP: Num; scale: Num }): H;
  siluActivation(input: H): H;
  geluActivation(input: H, approximate: "none" | "tanh"): H;
  attentionWithCache(options: { query: H; key: H; value: H; cacheKey: H; cacheValue: H; past: Num; mask: H | null; causal: boolean; scale: Num }): H;
  // c10d process groups (native/dist.cc); `group` and `store` are opaque handles
  distBackends(): string[];
  distConnect(o: {
    host: string;
    port: Num;
    isServer: boolean;
    rank: Num;
    worldSize: Num;
    timeoutMs: Num;
  }): Promise<{ store: DistHandle; worldSizes: Num[]; claims: Num }>;
  distNewGroup(o: {
    store: DistHandle;
    backend: string;
    rank: Num;
    worldSize: Num;
    timeoutMs: Num;
    deviceHostname?: string;
    deviceInterface?: string;
  }): Promise<DistHandle>;
  distDestroy(group: DistHandle): void;
  distAllReduce(group: DistHandle, o: { tensors: H[]; op: string; divisor?: Num; sync?: boolean }): Promise<void> | undefined;
  distBroadcast(group: DistHandle, o: { tensors: H[]; root: Num; sync?: boolean }): Promise<void> | undefined;
  distAllGather(group: DistHandle, o: { outputs: H[]; input: H; sync?: boolean }): Promise<void> | undefined;
  distReduceScatter(group: DistHandle, o: { output: H; inputs: H[]; op: string; divisor?: Num; sync?: boolean }): Promise<void> | undefined;
  distBarrier(group: DistHandle, o: { sync?: boolean }): Promise<void> | undefined;
  distAllReduceGrads(group: DistHandle, o: { params: H[]; divisor?: Num; sync?: boolean }): Promise<void> | undefined;
  distBroadcastFlat(group: DistHandle, o: { tensors: H[]; root: Num; sync?: boolean }): Promise<void> | undefined;
  distReducerNew(group: DistHandle, o: { buckets: H[][] }): DistHandle;
  distReducerFinish(reducer: DistHandle, o: { divisor?: Num; sync?: boolean }): Promise<void> | undefined;
  distReducerRelease(reducer: DistHandle): void;
  distReducerStarted(reducer: DistHandle): Num;
  randpermSeeded(n: Num, seed: Num): H;
  setNumThreads(n: Num): void;
  getNumThreads(): Num;
  // mixed-adapter batches (native/lora_mixed.cc)
  loraMixedLinear(options: MixedLinearOptions): H;
  loraMixedEmbedding(options: MixedEmbeddingOptions): H;
  // weight-aware LoRA inits and adapter combination (native/lora_init.cc, native/lora_combine.cc)
  loraInitFromWeight(options: { weight: H; A: H; B: H; method: string; niter: Num; scale: Num; fanInFanOut: boolean }): void;
  loraCombineFactors(options: {
    combination: string;
    As: H[];
    Bs: H[];
    weights: Num[];
    scales: Num[];
    rank: Num;
    density?: Num;
    majoritySignMethod?: string;
    svdClamp?: Num;
    svdFullMatrices?: boolean;
  }): [H, H];
  // DoRA (native/lora_dora.cc)
  loraDoraMagnitude(options: { weight: H; A: H; B: H; scale: Num; fanInFanOut: boolean; embedding: boolean }): H;
  loraDoraLinear(options: { x: H; weight: H; bias: H | null; fanInFanOut: boolean; training: boolean; A: H; B: H; magnitude: H; scale: Num; dropout: Num }): H;
  loraDoraEmbedding(options: { ids: H; weight: H; paddingIdx: Num; A: H; B: H; magnitude: H; scale: Num }): H;
  loraDoraMerge(options: DoraMergeOptions): H | null;
  loraDoraMergeAsync(options: DoraMergeOptions): Promise<H | null>;
  // fused LoRA forward, merge and restore (native/lora.cc, native/lora_kernels.cc); *Async run off the event loop
  loraLinear(options: LoraLinearOptions): H;
  loraEmbedding(options: LoraEmbeddingOptions): H;
  loraMerge(options: LoraMergeOptions): H | null;
  loraMergeAsync(options: LoraMergeOptions): Promise<H | null>;
  loraRestore(weight: H, backup: H): void;
  loraRestoreAsync(weight: H, backup: H): Promise<void>;
  // file bytes read straight into a contiguous CPU tensor's memory (native/file_read.cc, lib/io/read-into.ts)
  readIntoTensorAsync(options: { fd: number; position: number; target: H }): Promise<boolean>;
  // optimizers (native/optim.cc): one call over all parameters; `steps` is updated in place.
  // lib/optim checks the hyper-parameters; the state lists are read only when in use
  // (maxExpAvgSq with amsgrad, momentumBuffers with a non-zero momentum).
  adamwStep(options: {
    params: H[];
    expAvg: H[];
    expAvgSq: H[];
    maxExpAvgSq: H[];
    steps: Float64Array;
    lr: Num;
    beta1: Num;
    beta2: Num;
    eps: Num;
    weightDecay: Num;
    amsgrad: boolean;
    maximize: boolean;
  }): Num;
  sgdStep(options: {
    params: H[];
    momentumBuffers: H[];
    steps: Float64Array;
    lr: Num;
    momentum: Num;
    dampening: Num;
    weightDecay: Num;
    nesterov: boolean;
    maximize: boolean;
  }): Num;
  /** With errorIfNonfinite, a non-finite total norm is returned and nothing is clipped. */
  clipGradNorm(options: { params: H[]; maxNorm: Num; normType: Num; errorIfNonfinite: boolean }): Num;
  zeroGrad(params: H[], setToNone: boolean): void;
  optimZerosLike(params: H[]): H[];
}

/** The package root: the nearest folder above this file with our package.json (lib/ or dist/lib/). */
function packageRoot(): string {
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    const manifest = path.join(dir, "package.json");
    if (fs.existsSync(manifest) && JSON.parse(fs.readFileSync(manifest, "utf8")).name === "torch-lora") return dir;
    if (path.dirname(dir) === dir) return path.resolve(__dirname, "..");
  }
}

const ROOT = packageRoot();
const CANDIDATES = ["build/Release/torch_lora.node", "build/Debug/torch_lora.node"];

/** A libtorch as scripts/lib/find-libtorch.js describes it (null: none found). */
interface FoundLibtorch {
  version: string;
  variant: string;
  cxx11Abi: boolean;
  libDir: string;
  torchDir: string;
  source: string;
  tag: string;
  error?: string;
}

/** scripts/lib/prebuilds.js: shared with the install and prebuild scripts so all pick alike. */
interface PrebuildsModule {
  runtimeLibtorch(): FoundLibtorch | { error: string } | null;
  fittingPrebuilds(root: string, lt: FoundLibtorch | { error: string } | null): string[];
  noAddonMessage(root: string, lt: FoundLibtorch | { error: string } | null): string;
  missingToolchain(): string[];
  isInstalledPackage(root: string): boolean;
}

let prebuildsModule: PrebuildsModule | undefined;
/** scripts/lib/prebuilds.js, loaded on first use: a clone's own build loads without it. */
function prebuildsLib(): PrebuildsModule {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- a CommonJS script of the package, by path
  return (prebuildsModule ??= require(path.join(ROOT, "scripts/lib/prebuilds.js")) as PrebuildsModule);
}

/** True in an installed package, false in a clone of the repository (as scripts/install.js tells them apart). */
const isInstalled = (): boolean => prebuildsLib().isInstalledPackage(ROOT);

/** How to rebuild the addon here: the npm script in a clone, the install script in an installed package. */
function rebuildCommand(): string {
  return isInstalled() ? `node ${path.join(ROOT, "scripts/install.js")} --build` : "npm run rebuild";
}

function explainLoadFailure(file: string, err: Error, libtorch?: FoundLibtorch): string {
  const msg = err.message;
  const missingLib = /(lib[\w.+-]+\.so[\w.]*): cannot open shared object file/.exec(msg);
  if (missingLib) {
    const where = libtorch
      ? `  It was prebuilt against libtorch ${libtorch.version}; the one found here is in ${libtorch.libDir}:\n` +
        `  LD_LIBRARY_PATH=${libtorch.libDir} node ... makes it findable, or build against it: ${rebuildCommand()}\n`
      : "";
    return (
      `torch-lora: the native addon ${file} needs ${missingLib[1]}, which the dynamic loader cannot find.\n` +
      where +
      `  It was built against a libtorch that is no longer where it was. Either reinstall that libtorch\n` +
      `  (Debian/Ubuntu: apt-get install libtorch-dev libopenblas0-pthread), add its lib/ folder to LD_LIBRARY_PATH,\n` +
      `  or rebuild against the libtorch you have: ${rebuildCommand()}`
    );
  }
  const nodeApi = /undefined symbol: ((?:napi|node_api)_\w+)/.exec(msg);
  if (nodeApi) {
    return (
      `torch-lora: the native addon ${file} needs the Node-API function ${nodeApi[1]}, which Node ${process.version} lacks.\n` +
      `  Use the Node version it was built with (or a newer one), or rebuild it for this Node: ${rebuildCommand()}`
    );
  }
  if (/undefined symbol|version `[^']+' not found|wrong ELF class|invalid ELF header/.test(msg)) {
    return (
      `torch-lora: the native addon ${file} does not match the libtorch or system it is loaded on (ABI/version mismatch):\n` +
      `  ${msg.split("\n")[0]}\n  Rebuild it against the libtorch you have: ${rebuildCommand()}`
    );
  }
  return `torch-lora: the native addon ${file} failed to load: ${msg}\n  Rebuild it with: ${rebuildCommand()}`;
}

function requireAddon(file: string, libtorch?: FoundLibtorch): NativeBinding {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require(file) as NativeBinding;
  } catch (err) {
    throw new Error(explainLoadFailure(file, err as Error, libtorch));
  }
}

/**
 * Picks the addon, in order: TORCH_LORA_ADDON; a local build (build/Release, build/Debug),
 * unless LIBTORCH & co. now name another libtorch than it was built for; the prebuilds whose tag
 * matches the libtorch found at run time, best first; in an installed package with a compiler,
 * a build from source; else an error naming the libtorch found, the prebuilds shipped and what
 * to install. Returns the addon and its path.
 */
function load(): { binding: NativeBinding; file: string } {
  const override = process.env.TORCH_LORA_ADDON;
  if (override) {
    if (!fs.existsSync(override)) throw new Error(`torch-lora: TORCH_LORA_ADDON=${override} does not exist`);
    return { binding: requireAddon(override), file: override };
  }
  const local = CANDIDATES.map((c) => path.join(ROOT, c)).find((f) => fs.existsSync(f));
  const stale = local ? staleLocalBuild() : null;
  if (local && !stale) return { binding: requireAddon(local), file: local };
  // Only now pay for discovery (it may start python3): installed packages without a usable local build.
  const prebuilds = prebuildsLib();
  const libtorch = prebuilds.runtimeLibtorch();
  // Best first; nothing stays loaded from a library the dynamic loader refused, so the next
  // prebuild, or a build, may follow one that fails.
  let failed: { file: string; error: Error } | null = null;
  for (const prebuild of prebuilds.fittingPrebuilds(ROOT, libtorch)) {
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      return { binding: require(prebuild) as NativeBinding, file: prebuild };
    } catch (err) {
      failed ??= { file: prebuild, error: err as Error };
    }
  }
  const why = stale ?? (failed ? `the prebuilt addon ${path.basename(failed.file)} does not load here` : "no prebuilt addon fits");
  const build = buildOnLoad(prebuilds, libtorch, why);
  if (build.file) return { binding: requireAddon(build.file), file: build.file };
  if (failed) throw new Error(explainLoadFailure(failed.file, failed.error, libtorch as FoundLibtorch));
  throw new Error(
    `${prebuilds.noAddonMessage(ROOT, libtorch)}\n` +
      (stale ? `  (${stale})\n` : "") +
      (build.failed ? "  (the source build above failed: its output says why)\n" : "") +
      `  (a local build would be at ${CANDIDATES.map((c) => path.join(ROOT, c)).join(" or ")}; in a clone of the repository: npm run setup)`,
  );
}

/**
 * In an installed package: why its local build no longer fits, when LIBTORCH, Torch_DIR or
 * CMAKE_PREFIX_PATH now name another libtorch than the one it was built against (its stamp,
 * build/libtorch.json); else null. Only those variables are read, so a load starts no python3.
 */
function staleLocalBuild(): string | null {
  if (!isInstalled()) return null;
  const stampFile = path.join(ROOT, "build/libtorch.json");
  if (!fs.existsSync(stampFile)) return null;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { libtorchNamedByEnv } = require(path.join(ROOT, "scripts/lib/find-libtorch.js"));
  let named: { torchDir: string; source: string } | null;
  try {
    named = libtorchNamedByEnv(process.env);
  } catch {
    return null; // a LIBTORCH naming nothing: the build it has keeps working
  }
  const builtFor = (JSON.parse(fs.readFileSync(stampFile, "utf8")) as { torchDir: string }).torchDir;
  const same = (a: string, b: string) => fs.existsSync(a) && fs.existsSync(b) && fs.realpathSync(a) === fs.realpathSync(b);
  if (!named || same(named.torchDir, builtFor)) return null;
  return `the local build was made for the libtorch at ${builtFor}, but ${named.source} now names ${named.torchDir}`;
}

/**
 * No addon fits (`why` says how): in an installed package, with a C++ compiler and cmake on
 * PATH, build one from source now, once (scripts/install.js, which waits for a build another
 * process is running), with its output on stderr. TORCH_LORA_BUILD_ON_LOAD=0 turns this off.
 */
function buildOnLoad(prebuilds: PrebuildsModule, libtorch: FoundLibtorch | { error: string } | null, why: string): { file?: string; failed?: boolean } {
  if (process.env.TORCH_LORA_BUILD_ON_LOAD === "0" || !isInstalled() || !libtorch || libtorch.error) return {};
  if (prebuilds.missingToolchain().length > 0) return {};
  const lt = libtorch as FoundLibtorch;
  process.stderr.write(
    `torch-lora: ${why} (libtorch ${lt.version}, tag ${lt.tag}); building the addon from source with cmake-js, ` +
      `once (a few minutes; TORCH_LORA_BUILD_ON_LOAD=0 turns this off)\n`,
  );
  const r = spawnSync(process.execPath, [path.join(ROOT, "scripts/install.js")], { stdio: ["ignore", 2, 2] });
  const file = CANDIDATES.map((c) => path.join(ROOT, c)).find((f) => fs.existsSync(f));
  return r.status === 0 && file ? { file } : { failed: true };
}

/**
 * The binding with each function throwing the Error its native entry point returns: entry points
 * report failures that way rather than throwing from native code, which can crash Node 20 when a
 * garbage collection runs during the rethrow (see native/errors.h). They never return an Error
 * as a result.
 */
function throwingReturnedErrors(binding: NativeBinding): NativeBinding {
  // A copy whose functions are replaced in place: defineProperty keeps the declared type without a cast.
  const out: NativeBinding = { ...binding };
  for (const [name, value] of Object.entries(binding)) {
    if (typeof value !== "function") continue;
    const fn = value as (...args: unknown[]) => unknown;
    const wrapped = (...args: unknown[]): unknown => {
      const result = fn(...args);
      // Not `instanceof Error`: the addon's realm need not be the caller's (jest, vm contexts).
      // "stack" in ... first, so the common results (handles, numbers) skip the native check.
      if (typeof result === "object" && result !== null && "stack" in result && isNativeError(result)) throw result;
      return result;
    };
    Object.defineProperty(out, name, { value: wrapped, enumerable: true, writable: true, configurable: true });
  }
  return out;
}

const loaded = load();

/** The loaded native addon. */
export const native: NativeBinding = throwingReturnedErrors(loaded.binding);

/** The path of the .node file that was loaded (a local build, a prebuild, or TORCH_LORA_ADDON). */
export const addonPath: string = loaded.file;
