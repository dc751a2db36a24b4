/**
 * The Tensor class: a real torch::Tensor held through a native handle, with the operations a
 * small model and its loss need. Every operation is one native call; results are wrapped
 * without a constructor round trip into C++.
 */
import { native, NativeTensor } from "./binding";
import { Device, Dtype, checkDevice, checkDtype, isFloatingDtype } from "./dtype";
import { describe } from "./errors";
import { trackTensor } from "./scope-tracking";

/** Options accepted by tensor factories. */
export interface TensorOptions {
  dtype?: Dtype;
  device?: Device;
  requiresGrad?: boolean;
}

/** Any value accepted where a Tensor or a plain number may appear. */
export type Operand = Tensor | number;

let handleOfTensor: (t: Tensor) => NativeTensor;

/**
 * `value` as an options object (undefined gives `{}`); anything else (null, a string, an array)
 * is a TypeError naming `arg`, rather than a "cannot read properties of null" from deep inside.
 */
export function optionsObject<T extends object>(value: T | undefined, arg = "options"): T {
  if (value === undefined) return {} as T;
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new TypeError(`${arg}: expected an options object, got ${describe(value)}`);
  }
  return value;
}

/** A tensor backed by libtorch. Create one with {@link tensor}, {@link zeros}, {@link randn}, ... */
export class Tensor {
  readonly #h: NativeTensor;
  /** shape, dtype and device, fetched together on first use (one field keeps construction cheap). */
  #meta: { shape: readonly number[]; dtype: Dtype; device: Device } | undefined;

  static {
    handleOfTensor = (t) => t.#h;
  }

  /** @internal Wraps a native handle; use the factory functions instead. */
  constructor(handle: NativeTensor) {
    this.#h = handle;
    trackTensor(this); // the enclosing tidy(), if any, disposes it when it ends
  }

  /** Creates a CPU tensor from raw little-endian element bytes (copied). */
  static fromBytes(bytes: Uint8Array, shape: readonly number[], dtype: Dtype, device: Device = "cpu"): Tensor {
    return new Tensor(native.fromBytes(bytes, shape as number[], checkDtype(dtype, "dtype"), checkDevice(device, "device")));
  }

  #info(): { shape: readonly number[]; dtype: Dtype; device: Device } {
    if (!this.#meta) {
      const [shape, dtype, device] = native.meta(this.#h);
      this.#meta = { shape: Object.freeze(shape), dtype: dtype as Dtype, device: device as Device };
    }
    return this.#meta;
  }

  /** The size of each dimension. */
  get shape(): number[] {
    return this.#info().shape.slice();
  }
  /** Number of dimensions. */
  get ndim(): number {
    return this.#info().shape.length;
  }
  /** The element type. */
  get dtype(): Dtype {
    return this.#info().dtype;
  }
  /** Where the data lives: `"cpu"` or `"cuda:N"`. */
  get device(): Device {
    return this.#info().device;
  }
  /** Number of elements. */
  get numel(): number {
    return native.numel(this.#h);
  }
  /** Size of dimension `dim` (negative counts from the end). */
  size(dim: number): number {
    const shape = this.shape;
    const d = dim < 0 ? dim + shape.length : dim;
    if (!Number.isInteger(d) || d < 0 || d >= shape.length) {
      throw new RangeError(`dim: expected an integer in [${-shape.length}, ${shape.length - 1}], got ${describe(dim)}`);
    }
    return shape[d];
  }

  /** A typed copy of the values (float16/bfloat16 as Float32Array, int64 as BigInt64Array, bool as Uint8Array). */
  toArray(): Float32Array | Float64Array | Int32Array | Uint8Array | BigInt64Array {
    return native.toArray(this.#h);
  }
  /** The values as a flat array of JS numbers. */
  toList(): number[] {
    return Array.from(this.toArray() as ArrayLike<number | bigint>, Number);
  }
  /** The single value of a one-element tensor. */
  item(): number {
    return native.item(this.#h);
  }
  /** The raw little-endian element bytes, copied into a Buffer. */
  toBytes(): Buffer {
    return native.toBytes(this.#h);
  }

  /** Converts to another dtype and/or device (a new tensor; autograd flows through). */
  to(options: { dtype?: Dtype; device?: Device } | Dtype | Device): Tensor {
    const opts = typeof options === "string" ? (options.startsWith("c") ? { device: options as Device } : { dtype: options as Dtype }) : optionsObject(options);
    const dtype = opts.dtype === undefined ? null : checkDtype(opts.dtype, "dtype");
    const device = opts.device === undefined ? null : checkDevice(opts.device, "device");
    return new Tensor(native.to(this.#h, dtype, device));
  }
  /** A copy on the CPU. */
  cpu(): Tensor {
    return this.to({ device: "cpu" });
  }
  /** A copy that autograd tracks back to this tensor. */
  clone(): Tensor {
    return new Tensor(native.clone(this.#h));
  }
  /** The same data, cut from the autograd graph. */
  detach(): Tensor {
    return new Tensor(native.detach(this.#h));
  }
  /** A contiguous tensor with the same values. */
  contiguous(): Tensor {
    return new Tensor(native.contiguous(this.#h));
  }

  // ---- autograd ----
  /** Whether autograd records operations on this tensor. Only floating leaf tensors can be switched. */
  get requiresGrad(): boolean {
    return native.meta(this.#h)[3];
  }
  set requiresGrad(flag: boolean) {
    if (typeof flag !== "boolean") throw new TypeError(`requiresGrad: expected a boolean, got ${describe(flag)}`);
    native.setRequiresGrad(this.#h, flag);
  }
  /** True for tensors created by the user rather than by a recorded operation. */
  get isLeaf(): boolean {
    return native.meta(this.#h)[4];
  }
  /** The accumulated gradient, or null. Assign null to clear it. */
  get grad(): Tensor | null {
    const g = native.grad(this.#h);
    return g === null ? null : new Tensor(g);
  }
  set grad(value: null) {
    if (value !== null) throw new TypeError(`grad: only null can be assigned (to clear the gradient), got ${describe(value)}`);
    native.clearGrad(this.#h);
  }
  /** Computes gradients of this tensor with respect to the leaves that require them. */
  backward(gradient?: Tensor, options: { retainGraph?: boolean } = {}): void {
    const retainGraph = optionsObject(options).retainGraph ?? false;
    native.backward(this.#h, gradient === undefined ? null : handleOf(gradient, "gradient"), retainGraph);
  }

  // ---- arithmetic ----
  /** `this + other`. */
  add(other: Operand): Tensor {
    return new Tensor(native.add(this.#h, operand(other)));
  }
  /** `this - other`. */
  sub(other: Operand): Tensor {
    return new Tensor(native.sub(this.#h, operand(other)));
  }
  /** `this * other` (elementwise). */
  mul(other: Operand): Tensor {
    return new Tensor(native.mul(this.#h, operand(other)));
  }
  /** `this / other` (elementwise). */
  div(other: Operand): Tensor {
    return new Tensor(native.div(this.#h, operand(other)));
  }
  /** `this ** exponent` (elementwise). */
  pow(exponent: Operand): Tensor {
    return new Tensor(native.pow(this.#h, operand(exponent)));
  }
  /** Elementwise maximum with a tensor or a number. */
  maximum(other: Operand): Tensor {
    return new Tensor(native.maximum(this.#h, operand(other)));
  }
  /** Elementwise `==` as a bool tensor. */
  eq(other: Operand): Tensor {
    return new Tensor(native.eq(this.#h, operand(other)));
  }
  /** Elementwise `>` as a bool tensor. */
  gt(other: Operand): Tensor {
    return new Tensor(native.gt(this.#h, operand(other)));
  }
  /** Elementwise `<` as a bool tensor. */
  lt(other: Operand): Tensor {
    return new Tensor(native.lt(this.#h, operand(other)));
  }
  /** `-this`. */
  neg(): Tensor {
    return new Tensor(native.neg(this.#h));
  }
  /** Matrix product with PyTorch's broadcasting rules. */
  matmul(other: Tensor): Tensor {
    return new Tensor(native.matmul(this.#h, handleOf(other, "other")));
  }
  exp(): Tensor {
    return new Tensor(native.exp(this.#h));
  }
  log(): Tensor {
    return new Tensor(native.log(this.#h));
  }
  sqrt(): Tensor {
    return new Tensor(native.sqrt(this.#h));
  }
  abs(): Tensor {
    return new Tensor(native.abs(this.#h));
  }
  relu(): Tensor {
    return new Tensor(native.relu(this.#h));
  }
  gelu(): Tensor {
    return new Tensor(native.gelu(this.#h));
  }
  tanh(): Tensor {
    return new Tensor(native.tanh(this.#h));
  }
  sigmoid(): Tensor {
    return new Tensor(native.sigmoid(this.#h));
  }
  /** Softmax along `dim`. */
  softmax(dim: number): Tensor {
    return new Tensor(native.softmax(this.#h, dim));
  }
  /** Log-softmax along `dim`. */
  logSoftmax(dim: number): Tensor {
    return new Tensor(native.logSoftmax(this.#h, dim));
  }
  /** Zeroes elements with probability `p` and scales the rest by 1/(1-p) when `train` is true. */
  dropout(p: number, train = true): Tensor {
    return new Tensor(native.dropout(this.#h, p, train));
  }
  /** Bool tensor: which elements are finite. */
  isfinite(): Tensor {
    return new Tensor(native.isfinite(this.#h));
  }

  // ---- shape ----
  /** Swaps two dimensions. */
  transpose(dim0: number, dim1: number): Tensor {
    return new Tensor(native.transpose(this.#h, dim0, dim1));
  }
  /** Transpose of a matrix (≤ 2 dimensions). */
  t(): Tensor {
    return new Tensor(native.t(this.#h));
  }
  /** Same data with another shape (copies when it must); one dimension may be -1. */
  reshape(shape: readonly number[]): Tensor {
    return new Tensor(native.reshape(this.#h, shape as number[]));
  }
  /** A view with another shape (never copies; fails when the layout does not allow it). */
  view(shape: readonly number[]): Tensor {
    return new Tensor(native.view(this.#h, shape as number[]));
  }
  /** Picks entries along `dim` at the int64 positions in `index`. */
  indexSelect(dim: number, index: Tensor): Tensor {
    return new Tensor(native.indexSelect(this.#h, dim, handleOf(index, "index")));
  }
  /** A slice `[start, start + length)` along `dim` (a view). */
  narrow(dim: number, start: number, length: number): Tensor {
    return new Tensor(native.narrow(this.#h, dim, start, length));
  }

  // ---- reductions ----
  /** Sum of all elements, or along `dim` (a number or list). */
  sum(dim?: number | number[], keepdim = false): Tensor {
    return new Tensor(native.sum(this.#h, dims(dim), keepdim));
  }
  /** Mean of all elements, or along `dim`. */
  mean(dim?: number | number[], keepdim = false): Tensor {
    return new Tensor(native.mean(this.#h, dims(dim), keepdim));
  }
  /** Maximum of all elements, or the maximum values along `dim`. */
  max(dim?: number, keepdim = false): Tensor {
    return new Tensor(native.max(this.#h, dim ?? null, keepdim));
  }
  /** Index of the maximum (of the flattened tensor, or along `dim`). */
  argmax(dim?: number, keepdim = false): Tensor {
    return new Tensor(native.argmax(this.#h, dim ?? null, keepdim));
  }

  // ---- comparison ----
  /** True when `|this - other| <= atol + rtol·|other|` everywhere. */
  allclose(other: Tensor, options: { rtol?: number; atol?: number } = {}): boolean {
    const { rtol = 1e-5, atol = 1e-8 } = optionsObject(options);
    return native.allclose(this.#h, handleOf(other, "other"), rtol, atol);
  }
  /** True when shape, dtype, device and every value are the same (bit-exact for floats except NaN). */
  equal(other: Tensor): boolean {
    return native.equal(this.#h, handleOf(other, "other"));
  }
  /** True when every element is finite. */
  allFinite(): boolean {
    return native.item(native.allFinite(this.#h)) !== 0;
  }

  // ---- memory ----
  /** Frees the native memory now. Using the tensor afterwards throws. */
  dispose(): void {
    native.dispose(this.#h);
  }
  /** Whether {@link dispose} was called. */
  get isDisposed(): boolean {
    return native.isDisposed(this.#h);
  }

  /** A short description: `Tensor(shape=[2, 3], dtype=float32, device=cpu)`. */
  toString(): string {
    if (this.isDisposed) return "Tensor(disposed)";
    return `Tensor(shape=[${this.shape.join(", ")}], dtype=${this.dtype}, device=${this.device})`;
  }
}

/** The native handle of a tensor; throws a TypeError naming `arg` for anything else. */
export function handleOf(value: unknown, arg = "tensor"): NativeTensor {
  if (!(value instanceof Tensor)) throw new TypeError(`${arg}: expected a Tensor, got ${describe(value)}`);
  return handleOfTensor(value);
}

function operand(value: Operand): NativeTensor | number {
  if (typeof value === "number") return value;
  return handleOf(value, "other");
}

function dims(dim: number | number[] | undefined): number[] | null {
  if (dim === undefined) return null;
  return typeof dim === "number" ? [dim] : dim;
}

// ---------------------------------------------------------------- factories

type NestedNumbers = number | boolean | NestedNumbers[];
/** Data accepted by {@link tensor}. */
export type TensorData = ArrayBufferView | NestedNumbers[] | number;

function defaults(options: TensorOptions): { dtype: Dtype; device: Device; requiresGrad: boolean } {
  optionsObject(options);
  return {
    dtype: options.dtype === undefined ? "float32" : checkDtype(options.dtype, "dtype"),
    device: options.device === undefined ? "cpu" : checkDevice(options.device, "device"),
    requiresGrad: options.requiresGrad ?? false,
  };
}

function checkShape(shape: unknown): number[] {
  if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) {
    throw new TypeError(`shape: expected an array of non-negative integers, got ${describe(shape)}${Array.isArray(shape) ? ` [${shape.join(", ")}]` : ""}`);
  }
  return shape;
}

function checkGradDtype(requiresGrad: boolean, dtype: Dtype): void {
  if (requiresGrad && !isFloatingDtype(dtype)) {
    throw new TypeError(`requiresGrad: only floating-point tensors can require gradients, dtype is ${dtype}`);
  }
}

/** libtorch's limit on the number of dimensions. */
const MAX_NDIM = 64;

function inferShape(data: NestedNumbers[]): number[] {
  const shape: number[] = [];
  let level: NestedNumbers = data;
  while (Array.isArray(level)) {
    // Checked here so that absurd nesting is a clear error, not a stack overflow in flatten().
    if (shape.length === MAX_NDIM) throw new RangeError(`data: nested deeper than ${MAX_NDIM} levels (libtorch's limit on dimensions)`);
    shape.push(level.length);
    level = level[0];
  }
  return shape;
}

function flatten(data: NestedNumbers[], shape: number[], depth = 0, out: number[] = []): number[] {
  if (data.length !== shape[depth]) {
    throw new RangeError(`data: ragged nested array (expected ${shape[depth]} entries at depth ${depth}, got ${data.length})`);
  }
  for (const entry of data) {
    if (Array.isArray(entry)) {
      if (depth + 1 >= shape.length) throw new RangeError(`data: ragged nested array (unexpected array at depth ${depth + 1})`);
      flatten(entry, shape, depth + 1, out);
    } else {
      if (depth + 1 !== shape.length) throw new RangeError(`data: ragged nested array (number at depth ${depth}, expected an array)`);
      if (typeof entry !== "number" && typeof entry !== "boolean") {
        throw new TypeError(`data: expected numbers, got ${describe(entry)}`);
      }
      out.push(Number(entry));
    }
  }
  return out;
}

const TYPED_DTYPE: [new (...a: never[]) => ArrayBufferView, Dtype][] = [
  [Float32Array, "float32"],
  [Float64Array, "float64"],
  [Int32Array, "int32"],
  [BigInt64Array, "int64"],
  [Uint8Array, "uint8"],
];

/** Representable values of the integer dtypes (int64 limited to what a JS number holds exactly). */
const INT_RANGE: Partial<Record<Dtype, [number, number]>> = {
  int64: [-Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
  int32: [-(2 ** 31), 2 ** 31 - 1],
  uint8: [0, 255],
};

// libtorch would truncate fractions and wrap out-of-range values silently (300 -> 44 as uint8).
function fitsDtype(v: number, dtype: Dtype): boolean {
  const range = INT_RANGE[dtype];
  return !range || (Number.isInteger(v) && v >= range[0] && v <= range[1]);
}

function whyNotFits(v: number, dtype: Dtype): string {
  const range = INT_RANGE[dtype]!;
  return Number.isInteger(v) ? `is outside the ${dtype} range [${range[0]}, ${range[1]}]` : "is not an integer";
}

/**
 * Creates a tensor from data (values are copied).
 *
 * @param data A TypedArray, a flat number array (give `shape`), nested arrays, or a single number.
 * @param options `shape` (default: the data's own), `dtype` (default: the typed array's type, else float32), `device`, `requiresGrad`.
 * @example tensor([[1, 2], [3, 4]]) ; tensor(new Float32Array(6), { shape: [2, 3] }) ; tensor([3, 1, 4], { dtype: "int64" })
 */
export function tensor(data: TensorData, options: TensorOptions & { shape?: readonly number[] } = {}): Tensor {
  optionsObject(options);
  let values: ArrayBufferView;
  let shape: number[];
  let dtype: Dtype | undefined = options.dtype === undefined ? undefined : checkDtype(options.dtype, "dtype");
  if (typeof data === "number") {
    values = new Float64Array([data]);
    shape = options.shape ? checkShape(options.shape) : [];
  } else if (ArrayBuffer.isView(data)) {
    values = data;
    shape = options.shape ? checkShape(options.shape) : [(data as unknown as ArrayLike<number>).length];
    dtype ??= TYPED_DTYPE.find(([ctor]) => data instanceof ctor)?.[1];
    if (dtype === undefined) throw new TypeError(`data: unsupported typed array ${describe(data)}; give options.dtype`);
  } else if (Array.isArray(data)) {
    const nested = data.length > 0 && Array.isArray(data[0]);
    shape = nested ? inferShape(data) : [data.length];
    const flat = flatten(data, shape);
    if (!dtype && data.length > 0 && typeof (nested ? undefined : data[0]) === "boolean") dtype = "bool";
    if (options.shape) shape = checkShape(options.shape);
    values = new Float64Array(flat);
  } else {
    throw new TypeError(`data: expected a TypedArray, an array of numbers or a number, got ${describe(data)}`);
  }
  const resolved = defaults({ ...options, dtype: dtype ?? "float32" });
  if (values instanceof Float64Array || values instanceof Float32Array) {
    const bad = values.findIndex((v) => !fitsDtype(v, resolved.dtype));
    if (bad >= 0) throw new RangeError(`data[${bad}]: ${values[bad]} ${whyNotFits(values[bad], resolved.dtype)}, but dtype is ${resolved.dtype}`);
  }
  checkGradDtype(resolved.requiresGrad, resolved.dtype);
  return new Tensor(native.fromTypedArray(values, shape, resolved.dtype, resolved.device, resolved.requiresGrad));
}

function factory(kind: string, shape: readonly number[], options: TensorOptions, fill?: number): Tensor {
  const o = defaults(options);
  checkGradDtype(o.requiresGrad, o.dtype);
  return new Tensor(native.factory(kind, checkShape(shape), o.dtype, o.device, o.requiresGrad, fill));
}

/** A tensor of zeros. */
export const zeros = (shape: readonly number[], options: TensorOptions = {}): Tensor => factory("zeros", shape, options);
/** A tensor of ones. */
export const ones = (shape: readonly number[], options: TensorOptions = {}): Tensor => factory("ones", shape, options);
/** An uninitialized tensor (contents are whatever memory held). */
export const empty = (shape: readonly number[], options: TensorOptions = {}): Tensor => factory("empty", shape, options);
/** Uniform samples in [0, 1) from libtorch's generator. */
export const rand = (shape: readonly number[], options: TensorOptions = {}): Tensor => factory("rand", shape, options);
/** Standard normal samples from libtorch's generator. */
export const randn = (shape: readonly number[], options: TensorOptions = {}): Tensor => factory("randn", shape, options);

/** A tensor filled with `value`. */
export function full(shape: readonly number[], value: number, options: TensorOptions = {}): Tensor {
  if (typeof value !== "number") throw new TypeError(`value: expected a number, got ${describe(value)}`);
  const dtype = defaults(options).dtype;
  if (!fitsDtype(value, dtype)) throw new RangeError(`value: ${value} ${whyNotFits(value, dtype)}, but dtype is ${dtype}`);
  return factory("full", shape, options, value);
}

/**
 * Values from `start` (inclusive) to `end` (exclusive) in steps of `step`; `arange(n)` is `0..n-1`.
 * The default dtype is int64, as in PyTorch, when every argument is an integer, else float32.
 */
export function arange(start: number, end?: number, step = 1, options: TensorOptions = {}): Tensor {
  optionsObject(options);
  if (end === undefined) [start, end] = [0, start];
  for (const [name, v] of [["start", start], ["end", end], ["step", step]] as const) {
    if (typeof v !== "number" || !Number.isFinite(v)) throw new TypeError(`${name}: expected a finite number, got ${describe(v)}`);
  }
  const integral = [start, end, step].every(Number.isInteger);
  const o = defaults({ ...options, dtype: options.dtype ?? (integral ? "int64" : "float32") });
  checkGradDtype(o.requiresGrad, o.dtype);
  return new Tensor(native.arange(start, end, step, o.dtype, o.device, o.requiresGrad));
}

/** Concatenates tensors along `dim`. */
export function cat(tensors: readonly Tensor[], dim = 0): Tensor {
  if (!Array.isArray(tensors)) throw new TypeError(`tensors: expected an array of Tensors, got ${describe(tensors)}`);
  return new Tensor(native.cat(tensors.map((t, i) => handleOf(t, `tensors[${i}]`)), dim));
}

/**
 * Runs `fn` with gradient recording switched off (like `torch.no_grad()`), restoring the
 * previous mode afterwards. `fn` must be synchronous: grad mode belongs to the calling thread.
 */
export function noGrad<T>(fn: () => T): T {
  const previous = native.setGradEnabled(false);
  try {
    return fn();
  } finally {
    native.setGradEnabled(previous);
  }
}

/** Whether operations are currently recorded for autograd. */
export function isGradEnabled(): boolean {
  return native.isGradEnabled();
}

/** Seeds libtorch's random generators: the same seed gives bit-identical random tensors. */
export function manualSeed(seed: number): void {
  if (!Number.isInteger(seed) || seed < 0) throw new RangeError(`seed: expected a non-negative integer, got ${describe(seed)}`);
  native.manualSeed(seed);
}
