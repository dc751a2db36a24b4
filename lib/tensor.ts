/**
 * The Tensor class: a real torch::Tensor held through a native handle, with the operations a
 * small model and its loss need. Every operation is one native call; results are wrapped
 * without a constructor round trip into C++.
 */
import { native, NativeTensor } from "./binding";
import { Device, Dtype, checkDevice, checkDtype, dtypeOrDevice, isFloatingDtype } from "./dtype";
import { describe } from "./errors";
import {
  OperandInfo,
  ShapeRule,
  atLeast2D,
  bmmRule,
  broadcastRule,
  dimRule,
  dimsRule,
  expandRule,
  firstRule,
  formatShape,
  indexDtypeRule,
  inPlaceBroadcastRule,
  joinRule,
  maskDtypeRule,
  matmulRule,
  narrowRule,
  opError,
  permuteRule,
  reshapeRule,
  splitRule,
  topkRule,
} from "./op-errors";
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
    return new Tensor(native.fromBytes({ bytes, shape: shape as number[], dtype: checkDtype(dtype, "dtype"), device: checkDevice(device, "device") }));
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
    try {
      return native.item(this.#h);
    } catch (e) {
      const n = this.numel;
      if (n !== 1) throw new RangeError(`item(): the tensor must hold exactly one element, it holds ${n}`);
      throw e;
    }
  }
  /** The raw little-endian element bytes, copied into a Buffer. */
  toBytes(): Buffer {
    return native.toBytes(this.#h);
  }

  /** Converts to another dtype and/or device (a new tensor; autograd flows through). A string is a dtype name if it is one, else a device. */
  to(options: { dtype?: Dtype; device?: Device } | Dtype | Device): Tensor {
    const opts = typeof options === "string" ? dtypeOrDevice(options, "options") : optionsObject(options);
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
  // Each op is one native call in a try: the op's name, the operand shapes and the broken
  // rule are worked out only after a failure (lib/op-errors.ts), so a success pays nothing.

  /** `this + other` (broadcasting). */
  add(other: Operand): Tensor {
    try {
      return new Tensor(native.add(this.#h, operand(other)));
    } catch (e) {
      throw fail(
        "add",
        e,
        [
          ["self", this],
          ["other", other],
        ],
        [],
        broadcastRule,
      );
    }
  }
  /** `this - other` (broadcasting). */
  sub(other: Operand): Tensor {
    try {
      return new Tensor(native.sub(this.#h, operand(other)));
    } catch (e) {
      throw fail(
        "sub",
        e,
        [
          ["self", this],
          ["other", other],
        ],
        [],
        broadcastRule,
      );
    }
  }
  /** `this * other` (elementwise, broadcasting). */
  mul(other: Operand): Tensor {
    try {
      return new Tensor(native.mul(this.#h, operand(other)));
    } catch (e) {
      throw fail(
        "mul",
        e,
        [
          ["self", this],
          ["other", other],
        ],
        [],
        broadcastRule,
      );
    }
  }
  /** `this / other` (elementwise, broadcasting). */
  div(other: Operand): Tensor {
    try {
      return new Tensor(native.div(this.#h, operand(other)));
    } catch (e) {
      throw fail(
        "div",
        e,
        [
          ["self", this],
          ["other", other],
        ],
        [],
        broadcastRule,
      );
    }
  }
  /** `this ** exponent` (elementwise, broadcasting). */
  pow(exponent: Operand): Tensor {
    return this.#binary("pow", native.pow, exponent);
  }
  /** Elementwise maximum with a tensor or a number. */
  maximum(other: Operand): Tensor {
    return this.#binary("maximum", native.maximum, other);
  }
  /** Elementwise minimum with a tensor or a number. */
  minimum(other: Operand): Tensor {
    return this.#binary("minimum", native.minimum, other);
  }
  /** Elementwise `==` as a bool tensor. */
  eq(other: Operand): Tensor {
    return this.#binary("eq", native.eq, other);
  }
  /** Elementwise `!=` as a bool tensor. */
  ne(other: Operand): Tensor {
    return this.#binary("ne", native.ne, other);
  }
  /** Elementwise `>` as a bool tensor. */
  gt(other: Operand): Tensor {
    return this.#binary("gt", native.gt, other);
  }
  /** Elementwise `>=` as a bool tensor. */
  ge(other: Operand): Tensor {
    return this.#binary("ge", native.ge, other);
  }
  /** Elementwise `<` as a bool tensor. */
  lt(other: Operand): Tensor {
    return this.#binary("lt", native.lt, other);
  }
  /** Elementwise `<=` as a bool tensor. */
  le(other: Operand): Tensor {
    return this.#binary("le", native.le, other);
  }
  /**
   * Limits every element to `[min, max]`; either bound may be null (no limit on that side), and
   * either may be a Tensor broadcast against this one.
   */
  clamp(min?: Operand | null, max?: Operand | null): Tensor {
    try {
      if (min == null && max == null) throw new TypeError("min, max: expected at least one bound, got neither");
      const bound = (v: Operand | null | undefined, name: string) => (v == null ? null : typeof v === "number" ? v : handleOf(v, name));
      return new Tensor(native.clamp(this.#h, bound(min, "min"), bound(max, "max")));
    } catch (e) {
      throw fail(
        "clamp",
        e,
        [
          ["self", this],
          ["min", min],
          ["max", max],
        ],
        [],
        broadcastRule,
      );
    }
  }
  /** `-this`. */
  neg(): Tensor {
    return this.#unary("neg", native.neg);
  }
  /** Matrix product with PyTorch's broadcasting rules (1-D operands, batch dims broadcast). */
  matmul(other: Tensor): Tensor {
    try {
      return new Tensor(native.matmul(this.#h, handleOf(other, "other")));
    } catch (e) {
      throw fail(
        "matmul",
        e,
        [
          ["self", this],
          ["other", other],
        ],
        [],
        matmulRule,
      );
    }
  }
  /** Batched matrix product of `(b, n, m)` and `(b, m, p)` tensors: `(b, n, p)`; no broadcasting. */
  bmm(other: Tensor): Tensor {
    try {
      return new Tensor(native.bmm(this.#h, handleOf(other, "other")));
    } catch (e) {
      throw fail(
        "bmm",
        e,
        [
          ["self", this],
          ["other", other],
        ],
        [],
        bmmRule,
      );
    }
  }
  /** `e ** this`, elementwise. */
  exp(): Tensor {
    return this.#unary("exp", native.exp);
  }
  /** Natural logarithm, elementwise. */
  log(): Tensor {
    return this.#unary("log", native.log);
  }
  /** Square root, elementwise. */
  sqrt(): Tensor {
    return this.#unary("sqrt", native.sqrt);
  }
  /** `1 / sqrt(this)`, elementwise. */
  rsqrt(): Tensor {
    return this.#unary("rsqrt", native.rsqrt);
  }
  /** Absolute value, elementwise. */
  abs(): Tensor {
    return this.#unary("abs", native.abs);
  }
  /** Sine (radians), elementwise. */
  sin(): Tensor {
    return this.#unary("sin", native.sin);
  }
  /** Cosine (radians), elementwise. */
  cos(): Tensor {
    return this.#unary("cos", native.cos);
  }
  /** `max(this, 0)`. */
  relu(): Tensor {
    return this.#unary("relu", native.relu);
  }
  /** GELU, the exact (erf) form, as `torch.nn.functional.gelu`. */
  gelu(): Tensor {
    return this.#unary("gelu", native.gelu);
  }
  /** SiLU (swish): `this * sigmoid(this)`. */
  silu(): Tensor {
    return this.#unary("silu", native.silu);
  }
  /** Hyperbolic tangent, elementwise. */
  tanh(): Tensor {
    return this.#unary("tanh", native.tanh);
  }
  /** Logistic sigmoid, elementwise. */
  sigmoid(): Tensor {
    return this.#unary("sigmoid", native.sigmoid);
  }
  /** Softmax along `dim`. */
  softmax(dim: number): Tensor {
    try {
      return new Tensor(native.softmax(this.#h, dim));
    } catch (e) {
      throw fail("softmax", e, [["self", this]], [dim], dimRule);
    }
  }
  /** Log-softmax along `dim`. */
  logSoftmax(dim: number): Tensor {
    try {
      return new Tensor(native.logSoftmax(this.#h, dim));
    } catch (e) {
      throw fail("logSoftmax", e, [["self", this]], [dim], dimRule);
    }
  }
  /** Zeroes elements with probability `p` and scales the rest by 1/(1-p) when `train` is true. */
  dropout(p: number, train = true): Tensor {
    if (typeof p === "number" && !(p >= 0 && p <= 1)) throw new RangeError(`p: dropout probability must be in [0, 1], got ${describe(p)}`);
    try {
      return new Tensor(native.dropout(this.#h, p, train));
    } catch (e) {
      throw fail("dropout", e, [["self", this]]);
    }
  }
  /** Bool tensor: which elements are finite. */
  isfinite(): Tensor {
    return this.#unary("isfinite", native.isfinite);
  }

  // ---- in place ----
  // Refused on a leaf that requires grad while grad mode is on, as in PyTorch: autograd needs
  // the leaf's value. Inside noGrad() they update parameters by hand.

  /** `this += alpha * other`, in place; returns this tensor. */
  add_(other: Operand, options: { alpha?: number } = {}): Tensor {
    try {
      const alpha = optionsObject(options).alpha ?? 1;
      if (typeof alpha !== "number") throw new TypeError(`alpha: expected a number, got ${describe(alpha)}`);
      native.add_(this.#h, operand(other), alpha);
      return this;
    } catch (e) {
      if ((e as Error)?.name !== "TypeError") this.#refuseLeafWrite("add_");
      throw fail(
        "add_",
        e,
        [
          ["self", this],
          ["other", other],
        ],
        [],
        inPlaceBroadcastRule,
      );
    }
  }
  /** `this *= other`, in place; returns this tensor. */
  mul_(other: Operand): Tensor {
    try {
      native.mul_(this.#h, operand(other));
      return this;
    } catch (e) {
      if ((e as Error)?.name !== "TypeError") this.#refuseLeafWrite("mul_");
      throw fail(
        "mul_",
        e,
        [
          ["self", this],
          ["other", other],
        ],
        [],
        inPlaceBroadcastRule,
      );
    }
  }
  /** Copies `src`'s values (broadcast to this shape, converted to this dtype) into this tensor; autograd records it. */
  copy_(src: Tensor): Tensor {
    try {
      native.copy_(this.#h, handleOf(src, "src"));
      return this;
    } catch (e) {
      if ((e as Error)?.name !== "TypeError") this.#refuseLeafWrite("copy_");
      throw fail(
        "copy_",
        e,
        [
          ["self", this],
          ["src", src],
        ],
        [],
        inPlaceBroadcastRule,
      );
    }
  }
  /** Fills this tensor with zeros, in place; returns this tensor. */
  zero_(): Tensor {
    try {
      native.zero_(this.#h);
      return this;
    } catch (e) {
      this.#refuseLeafWrite("zero_");
      throw fail("zero_", e, [["self", this]]);
    }
  }
  /** After a failed in-place op: libtorch's refusal to write a leaf that requires grad names no op. */
  #refuseLeafWrite(op: string): void {
    if (isGradEnabled() && this.requiresGrad && this.isLeaf) {
      throw new Error(
        `${op}: cannot modify a leaf Tensor that requires grad in place (autograd needs its value); do it inside noGrad(), or use the out-of-place op`,
      );
    }
  }

  // ---- shape ----
  /** Swaps two dimensions (a view). */
  transpose(dim0: number, dim1: number): Tensor {
    try {
      return new Tensor(native.transpose(this.#h, dim0, dim1));
    } catch (e) {
      throw fail(
        "transpose",
        e,
        [["self", this]],
        [dim0, dim1],
        firstRule(dimRule, (o) => dimRule(o, [dim1])),
      );
    }
  }
  /** Transpose of a matrix (≤ 2 dimensions). */
  t(): Tensor {
    return this.#unary("t", native.t);
  }
  /** Reorders the dimensions (a view): `x.permute(0, 2, 1)` or `x.permute([0, 2, 1])`. */
  permute(...dims: number[] | [readonly number[]]): Tensor {
    const order = sizesArg(dims);
    try {
      return new Tensor(native.permute(this.#h, order));
    } catch (e) {
      throw fail("permute", e, [["self", this]], [order], permuteRule);
    }
  }
  /** Inserts a dimension of size 1 at `dim` (a view); `dim` may be `ndim` (append). */
  unsqueeze(dim: number): Tensor {
    try {
      return new Tensor(native.unsqueeze(this.#h, dim));
    } catch (e) {
      throw fail("unsqueeze", e, [["self", this]], [dim], (o) => (o[0].shape ? dimRule([{ ...o[0], shape: [...o[0].shape, 1] }], [dim]) : null));
    }
  }
  /** Removes every dimension of size 1, or only `dim` when it has size 1 (a view). */
  squeeze(dim?: number): Tensor {
    try {
      return new Tensor(native.squeeze(this.#h, dim ?? null));
    } catch (e) {
      throw fail("squeeze", e, [["self", this]], [dim], dimRule);
    }
  }
  /** Merges dimensions `startDim..endDim` (inclusive) into one. */
  flatten(startDim = 0, endDim = -1): Tensor {
    try {
      return new Tensor(native.flatten(this.#h, startDim, endDim));
    } catch (e) {
      throw fail(
        "flatten",
        e,
        [["self", this]],
        [startDim, endDim],
        firstRule(dimRule, (o) => dimRule(o, [endDim])),
      );
    }
  }
  /** Broadcasts size-1 dims to `sizes` without copying (-1 keeps a size): `x.expand(4, -1)` or `x.expand([4, -1])`. */
  expand(...sizes: number[] | [readonly number[]]): Tensor {
    const shape = sizesArg(sizes);
    try {
      return new Tensor(native.expand(this.#h, shape));
    } catch (e) {
      throw fail("expand", e, [["self", this]], [shape], expandRule);
    }
  }
  /** Same data with another shape (copies when it must); one dimension may be -1. */
  reshape(shape: readonly number[]): Tensor {
    try {
      return new Tensor(native.reshape(this.#h, shape as number[]));
    } catch (e) {
      throw fail("reshape", e, [["self", this]], [shape], reshapeRule("reshape"));
    }
  }
  /** A view with another shape (never copies; fails when the layout does not allow it). */
  view(shape: readonly number[]): Tensor {
    try {
      return new Tensor(native.view(this.#h, shape as number[]));
    } catch (e) {
      throw fail("view", e, [["self", this]], [shape], reshapeRule("view"));
    }
  }
  /** Picks entries along `dim` at the int64 positions in `index`. */
  indexSelect(dim: number, index: Tensor): Tensor {
    try {
      return new Tensor(native.indexSelect(this.#h, dim, handleOf(index, "index")));
    } catch (e) {
      throw fail(
        "indexSelect",
        e,
        [
          ["self", this],
          ["index", index],
        ],
        [dim],
        firstRule(dimRule, indexDtypeRule(1, ["int64", "int32"])),
      );
    }
  }
  /** A slice `[start, start + length)` along `dim` (a view). */
  narrow(dim: number, start: number, length: number): Tensor {
    try {
      return new Tensor(native.narrow(this.#h, { dim, start, length }));
    } catch (e) {
      throw fail("narrow", e, [["self", this]], [dim, start, length], narrowRule);
    }
  }
  /**
   * `x[start:end:step]` along `dim` (a view), with Python's slice semantics: null or undefined
   * bounds mean the ends, negative bounds count from the end, out-of-range bounds are clamped.
   */
  slice(dim: number, start: number | null = null, end: number | null = null, step = 1): Tensor {
    if (Number.isInteger(step) && step <= 0) throw this.#notPositive("slice", "step", step);
    try {
      return new Tensor(native.slice(this.#h, { dim, start: start ?? null, end: end ?? null, step }));
    } catch (e) {
      throw fail("slice", e, [["self", this]], [dim], dimRule);
    }
  }
  /** Splits along `dim` into pieces of `splitSize` (the last may be smaller) or of the listed sizes (views). */
  split(splitSizeOrSections: number | readonly number[], dim = 0): Tensor[] {
    const size = splitSizeOrSections;
    if (typeof size === "number" && Number.isInteger(size) && size <= 0) throw this.#notPositive("split", "splitSizeOrSections", size);
    try {
      return native.split(this.#h, splitSizeOrSections as number | number[], dim).map(wrap);
    } catch (e) {
      throw fail(
        "split",
        e,
        [["self", this]],
        [dim],
        firstRule(dimRule, (o) => splitRule(o, splitSizeOrSections, dim)),
      );
    }
  }
  /** Splits along `dim` into `chunks` pieces of equal size (the last may be smaller; fewer when the size is small). */
  chunk(chunks: number, dim = 0): Tensor[] {
    if (Number.isInteger(chunks) && chunks <= 0) throw this.#notPositive("chunk", "chunks", chunks);
    try {
      return native.chunk(this.#h, chunks, dim).map(wrap);
    } catch (e) {
      throw fail("chunk", e, [["self", this]], [dim], dimRule);
    }
  }

  /** The RangeError of `op` for an integer argument that must be positive. */
  #notPositive(op: string, arg: string, value: number): RangeError {
    return new RangeError(`${op}: ${arg}: expected a positive integer, got ${value} (shapes: self ${formatShape(this.shape)})`);
  }

  // ---- indexing ----
  /** Replaces the elements where the bool `mask` (broadcast to this shape) is true by `value`. */
  maskedFill(mask: Tensor, value: Operand): Tensor {
    try {
      return new Tensor(native.maskedFill(this.#h, handleOf(mask, "mask"), typeof value === "number" ? value : handleOf(value, "value")));
    } catch (e) {
      throw fail(
        "maskedFill",
        e,
        [
          ["self", this],
          ["mask", mask],
          ["value", value],
        ],
        [],
        firstRule(maskDtypeRule(1), broadcastRule),
      );
    }
  }
  /** The upper triangle of the last two dims: elements with `col - row >= diagonal`, the rest zero. */
  triu(diagonal = 0): Tensor {
    try {
      return new Tensor(native.triu(this.#h, diagonal));
    } catch (e) {
      throw fail("triu", e, [["self", this]], [diagonal], atLeast2D);
    }
  }
  /** The lower triangle of the last two dims: elements with `col - row <= diagonal`, the rest zero. */
  tril(diagonal = 0): Tensor {
    try {
      return new Tensor(native.tril(this.#h, diagonal));
    } catch (e) {
      throw fail("tril", e, [["self", this]], [diagonal], atLeast2D);
    }
  }
  /** `out[i][j] = this[index[i][j]][j]` for `dim = 0` (and so on): picks along `dim` at int64 `index`. */
  gather(dim: number, index: Tensor): Tensor {
    try {
      return new Tensor(native.gather(this.#h, dim, handleOf(index, "index")));
    } catch (e) {
      throw fail(
        "gather",
        e,
        [
          ["self", this],
          ["index", index],
        ],
        [dim],
        firstRule(dimRule, indexDtypeRule(1)),
      );
    }
  }
  /** A copy with `src`'s values added at the int64 positions `index` along `dim` (the reverse of gather). */
  scatterAdd(dim: number, index: Tensor, src: Tensor): Tensor {
    try {
      return new Tensor(native.scatterAdd(this.#h, { dim, index: handleOf(index, "index"), src: handleOf(src, "src") }));
    } catch (e) {
      throw fail(
        "scatterAdd",
        e,
        [
          ["self", this],
          ["index", index],
          ["src", src],
        ],
        [dim],
        firstRule(dimRule, indexDtypeRule(1)),
      );
    }
  }
  /** A copy with `alpha * source` slices added at the positions `index` (1-D, int64 or int32) along `dim`. */
  indexAdd(dim: number, index: Tensor, source: Tensor, options: { alpha?: number } = {}): Tensor {
    try {
      const alpha = optionsObject(options).alpha ?? 1;
      if (typeof alpha !== "number") throw new TypeError(`alpha: expected a number, got ${describe(alpha)}`);
      return new Tensor(native.indexAdd(this.#h, { dim, index: handleOf(index, "index"), source: handleOf(source, "source"), alpha }));
    } catch (e) {
      throw fail(
        "indexAdd",
        e,
        [
          ["self", this],
          ["index", index],
          ["source", source],
        ],
        [dim],
        firstRule(dimRule, indexDtypeRule(1, ["int64", "int32"])),
      );
    }
  }
  /** The `k` largest (or smallest) elements along `dim` (default -1), with their int64 indices. */
  topk(k: number, options: { dim?: number; largest?: boolean; sorted?: boolean } = {}): { values: Tensor; indices: Tensor } {
    let dim = -1;
    try {
      const o = optionsObject(options);
      dim = o.dim ?? -1;
      const [values, indices] = native.topk(this.#h, { k, dim, largest: o.largest ?? true, sorted: o.sorted ?? true });
      return { values: new Tensor(values), indices: new Tensor(indices) };
    } catch (e) {
      throw fail(
        "topk",
        e,
        [["self", this]],
        [dim],
        firstRule(dimRule, (o) => topkRule(o, k, dim)),
      );
    }
  }
  /**
   * Sorts along `dim` (default -1), ascending unless `descending`; `stable` keeps the order of
   * equal elements. `x.sort(0)` is `x.sort({ dim: 0 })`.
   */
  sort(options: number | { dim?: number; descending?: boolean; stable?: boolean } = {}): { values: Tensor; indices: Tensor } {
    let dim = -1;
    try {
      const o = typeof options === "number" ? { dim: options } : optionsObject(options);
      dim = o.dim ?? -1;
      const [values, indices] = native.sort(this.#h, { dim, descending: o.descending ?? false, stable: o.stable ?? false });
      return { values: new Tensor(values), indices: new Tensor(indices) };
    } catch (e) {
      throw fail("sort", e, [["self", this]], [dim], dimRule);
    }
  }
  /**
   * `numSamples` int64 indices drawn from the categorical distribution whose (unnormalized,
   * non-negative) weights are this 1-D or 2-D tensor's last dim; libtorch's generator, so
   * {@link manualSeed} makes the draws reproducible.
   */
  multinomial(numSamples: number, replacement = false): Tensor {
    try {
      return new Tensor(native.multinomial(this.#h, numSamples, replacement));
    } catch (e) {
      throw fail("multinomial", e, [["self", this]]);
    }
  }

  // ---- reductions ----
  /** Sum of all elements, or along `dim` (a number or list). */
  sum(dim?: number | number[], keepdim = false): Tensor {
    try {
      return new Tensor(native.sum(this.#h, dims(dim), keepdim));
    } catch (e) {
      throw fail("sum", e, [["self", this]], [dim], dimsRule);
    }
  }
  /** Mean of all elements, or along `dim`. */
  mean(dim?: number | number[], keepdim = false): Tensor {
    try {
      return new Tensor(native.mean(this.#h, dims(dim), keepdim));
    } catch (e) {
      throw fail("mean", e, [["self", this]], [dim], dimsRule);
    }
  }
  /**
   * Variance of all elements, or along `dim`, with Bessel's correction by default
   * (`correction: 1`; `unbiased: false` or `correction: 0` for the population variance).
   */
  var(dim?: number | number[] | null, options: DispersionOptions = {}): Tensor {
    try {
      const { correction, keepdim } = dispersion(options);
      return new Tensor(native.var(this.#h, { dim: dims(dim ?? undefined), correction, keepdim }));
    } catch (e) {
      throw fail("var", e, [["self", this]], [dim], dimsRule);
    }
  }
  /** Standard deviation: the square root of {@link var}, with the same options. */
  std(dim?: number | number[] | null, options: DispersionOptions = {}): Tensor {
    try {
      const { correction, keepdim } = dispersion(options);
      return new Tensor(native.std(this.#h, { dim: dims(dim ?? undefined), correction, keepdim }));
    } catch (e) {
      throw fail("std", e, [["self", this]], [dim], dimsRule);
    }
  }
  /** `log(sum(exp(this)))` along `dim`, computed without overflow. */
  logsumexp(dim: number | number[], keepdim = false): Tensor {
    try {
      return new Tensor(native.logsumexp(this.#h, dims(dim) ?? (undefined as never), keepdim));
    } catch (e) {
      throw fail("logsumexp", e, [["self", this]], [dim], dimsRule);
    }
  }
  /** Running sum along `dim` (integer inputs give int64, as in PyTorch). */
  cumsum(dim: number): Tensor {
    try {
      return new Tensor(native.cumsum(this.#h, dim));
    } catch (e) {
      throw fail("cumsum", e, [["self", this]], [dim], dimRule);
    }
  }
  /** Maximum of all elements, or the maximum values along `dim`. */
  max(dim?: number, keepdim = false): Tensor {
    try {
      return new Tensor(native.max(this.#h, dim ?? null, keepdim));
    } catch (e) {
      throw fail("max", e, [["self", this]], [dim], dimRule);
    }
  }
  /** Index of the maximum (of the flattened tensor, or along `dim`). */
  argmax(dim?: number, keepdim = false): Tensor {
    try {
      return new Tensor(native.argmax(this.#h, dim ?? null, keepdim));
    } catch (e) {
      throw fail("argmax", e, [["self", this]], [dim], dimRule);
    }
  }

  // ---- one-operand and two-operand ops without special rules ----
  #unary(op: string, fn: (h: NativeTensor) => NativeTensor): Tensor {
    try {
      return new Tensor(fn(this.#h));
    } catch (e) {
      throw fail(op, e, [["self", this]]);
    }
  }
  #binary(op: string, fn: (a: NativeTensor, b: NativeTensor | number) => NativeTensor, other: Operand): Tensor {
    try {
      return new Tensor(fn(this.#h, operand(other)));
    } catch (e) {
      throw fail(
        op,
        e,
        [
          ["self", this],
          ["other", other],
        ],
        [],
        broadcastRule,
      );
    }
  }

  // ---- comparison ----
  /** True when `|this - other| <= atol + rtol·|other|` everywhere. */
  allclose(other: Tensor, options: { rtol?: number; atol?: number } = {}): boolean {
    const { rtol = 1e-5, atol = 1e-8 } = optionsObject(options);
    for (const [name, v] of [
      ["rtol", rtol],
      ["atol", atol],
    ] as const) {
      if (typeof v === "number" && !(v >= 0 && Number.isFinite(v))) throw new RangeError(`${name}: expected a finite number >= 0, got ${describe(v)}`);
    }
    return native.allclose(this.#h, handleOf(other, "other"), { rtol, atol });
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

/** A native result handle as a Tensor (for `map`). */
const wrap = (h: NativeTensor): Tensor => new Tensor(h);

/** The error to throw for op `op` that failed with `err` (see lib/op-errors.ts). */
function fail(op: string, err: unknown, operands: readonly (readonly [string, unknown])[], args: readonly unknown[] = [], rule?: ShapeRule): unknown {
  const infos: OperandInfo[] = operands.map(([name, value]) => {
    const live = value instanceof Tensor && !value.isDisposed;
    return { name, shape: live ? value.shape : null, dtype: live ? value.dtype : null };
  });
  return opError(op, err, infos, args, rule);
}

/** Sizes given as `f(1, 2, 3)` or `f([1, 2, 3])`. */
function sizesArg(sizes: number[] | [readonly number[]]): number[] {
  return (sizes.length === 1 && Array.isArray(sizes[0]) ? sizes[0] : sizes) as number[];
}

/** Options of {@link Tensor.var} and {@link Tensor.std}. */
export interface DispersionOptions {
  /** Subtracted from the element count in the divisor: 1 (default, Bessel's correction) or 0. */
  correction?: number;
  /** PyTorch's older spelling: `false` is `correction: 0`, `true` is `correction: 1`. */
  unbiased?: boolean;
  /** Keep the reduced dims with size 1. */
  keepdim?: boolean;
}

function dispersion(options: DispersionOptions): { correction: number; keepdim: boolean } {
  const { correction, unbiased, keepdim = false } = optionsObject(options);
  if (correction !== undefined && unbiased !== undefined) {
    throw new TypeError("options: give correction or unbiased, not both");
  }
  if (unbiased !== undefined && typeof unbiased !== "boolean") throw new TypeError(`unbiased: expected a boolean, got ${describe(unbiased)}`);
  const c = correction ?? (unbiased === false ? 0 : 1);
  if (!Number.isInteger(c) || c < 0) throw new RangeError(`correction: expected an integer >= 0, got ${describe(correction)}`);
  if (typeof keepdim !== "boolean") throw new TypeError(`keepdim: expected a boolean, got ${describe(keepdim)}`);
  return { correction: c, keepdim };
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
  return new Tensor(native.fromTypedArray({ data: values, shape, dtype: resolved.dtype, device: resolved.device, requiresGrad: resolved.requiresGrad }));
}

function factory(kind: string, shape: readonly number[], options: TensorOptions, fill?: number): Tensor {
  const o = defaults(options);
  checkGradDtype(o.requiresGrad, o.dtype);
  return new Tensor(native.factory({ kind, shape: checkShape(shape), dtype: o.dtype, device: o.device, requiresGrad: o.requiresGrad, fill }));
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
  for (const [name, v] of [
    ["start", start],
    ["end", end],
    ["step", step],
  ] as const) {
    if (typeof v !== "number" || !Number.isFinite(v)) throw new TypeError(`${name}: expected a finite number, got ${describe(v)}`);
  }
  if (step === 0) throw new RangeError(`step: must be a finite non-zero number, got ${describe(step)}`);
  const integral = [start, end, step].every(Number.isInteger);
  const o = defaults({ ...options, dtype: options.dtype ?? (integral ? "int64" : "float32") });
  checkGradDtype(o.requiresGrad, o.dtype);
  return new Tensor(native.arange({ start, end, step, dtype: o.dtype, device: o.device, requiresGrad: o.requiresGrad }));
}

/** Concatenates tensors along an existing `dim`; their shapes must agree except in `dim`. */
export function cat(tensors: readonly Tensor[], dim = 0): Tensor {
  return join("cat", native.cat, tensors, dim);
}

/** Stacks tensors of equal shapes along a new dim `dim` (`0 <= dim <= ndim`, or negative). */
export function stack(tensors: readonly Tensor[], dim = 0): Tensor {
  return join("stack", native.stack, tensors, dim);
}

function join(op: "cat" | "stack", fn: (ts: NativeTensor[], dim: number) => NativeTensor, tensors: readonly Tensor[], dim: number): Tensor {
  if (!Array.isArray(tensors)) throw new TypeError(`${op}: tensors: expected an array of Tensors, got ${describe(tensors)}`);
  if (tensors.length === 0) throw new RangeError(`${op}: tensors: expected at least one Tensor, got an empty array`);
  try {
    return new Tensor(
      fn(
        tensors.map((t, i) => handleOf(t, `tensors[${i}]`)),
        dim,
      ),
    );
  } catch (e) {
    throw fail(
      op,
      e,
      tensors.map((t, i) => [`tensors[${i}]`, t] as const),
      [dim],
      joinRule(op),
    );
  }
}

/**
 * Elementwise choice: `input` where the bool `condition` is true, else `other`; the three
 * broadcast together, and either value may be a number.
 */
export function where(condition: Tensor, input: Operand, other: Operand): Tensor {
  try {
    const value = (v: Operand, name: string) => (typeof v === "number" ? v : handleOf(v, name));
    return new Tensor(native.where(handleOf(condition, "condition"), value(input, "input"), value(other, "other")));
  } catch (e) {
    throw fail(
      "where",
      e,
      [
        ["condition", condition],
        ["input", input],
        ["other", other],
      ],
      [],
      firstRule(maskDtypeRule(0), broadcastRule),
    );
  }
}

/**
 * One-hot encoding of int64 class indices: a new last dim of size `numClasses` (default: the
 * largest index + 1), int64, as `torch.nn.functional.one_hot`.
 */
export function oneHot(indices: Tensor, numClasses = -1): Tensor {
  try {
    return new Tensor(native.oneHot(handleOf(indices, "indices"), numClasses));
  } catch (e) {
    throw fail("oneHot", e, [["indices", indices]], [], indexDtypeRule(0));
  }
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
