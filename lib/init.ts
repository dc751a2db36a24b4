/**
 * Parameter initialization: each function calls libtorch's `torch::nn::init` function of the
 * same name on the real tensor, in place, on any device and floating dtype, and returns it.
 */
import { NativeTensor, native } from "./binding";
import { isFloatingDtype } from "./dtype";
import { describe } from "./errors";
import { Tensor, handleOf, optionsObject } from "./tensor";

/** Fan mode for the Kaiming initializers. */
export type FanMode = "fan_in" | "fan_out";
/** Nonlinearity used to compute the Kaiming gain. */
export type Nonlinearity = "leaky_relu" | "relu" | "linear" | "tanh" | "sigmoid";

/** Options of {@link kaiming_uniform_} and {@link kaiming_normal_}; defaults as in PyTorch. */
export interface KaimingOptions {
  a?: number;
  mode?: FanMode;
  nonlinearity?: Nonlinearity;
}

/** PyTorch's defaults filled in. */
function kaimingDefaults(options: KaimingOptions): Required<KaimingOptions> {
  return { a: finite("a", options.a ?? 0), mode: options.mode ?? "fan_in", nonlinearity: options.nonlinearity ?? "leaky_relu" };
}

/**
 * The tensor to fill, checked: a floating-point Tensor, with at least 2 dims when `fanOf` names
 * the function that computes its fans (libtorch's C++ initializers would divide by a zero fan or
 * refuse with a message that names no argument).
 */
function target(t: Tensor, fanOf?: string): NativeTensor {
  const h = handleOf(t);
  if (!isFloatingDtype(t.dtype)) throw new TypeError(`tensor: init functions need a floating-point tensor, got ${t.dtype}`);
  if (fanOf !== undefined && t.ndim < 2)
    throw new RangeError(`${fanOf}: fan in and fan out cannot be computed for a tensor with fewer than 2 dimensions (got ${t.ndim})`);
  return h;
}

/** Throws a RangeError naming `name` unless `value` is a finite number; returns it. */
function finite(name: string, value: number): number {
  if (typeof value === "number" && !Number.isFinite(value)) throw new RangeError(`${name}: expected a finite number, got ${describe(value)}`);
  return value;
}

/** Fills with samples of N(mean, std²). */
export function normal_(t: Tensor, mean = 0, std = 1): Tensor {
  const h = target(t);
  finite("mean", mean);
  if (finite("std", std) < 0) throw new RangeError(`std: must be >= 0, got ${describe(std)}`);
  native.initNormal(h, mean, std);
  return t;
}
/** Fills with samples of U(a, b). */
export function uniform_(t: Tensor, a = 0, b = 1): Tensor {
  const h = target(t);
  if (finite("a", a) > finite("b", b)) throw new RangeError(`uniform_: a must be <= b, got a=${describe(a)} b=${describe(b)}`);
  native.initUniform(h, a, b);
  return t;
}
/** Fills with `value`. */
export function constant_(t: Tensor, value: number): Tensor {
  native.initConstant(target(t), value);
  return t;
}
/** Fills with exact zeros. */
export function zeros_(t: Tensor): Tensor {
  native.initZeros(target(t));
  return t;
}
/** Fills with ones. */
export function ones_(t: Tensor): Tensor {
  native.initOnes(target(t));
  return t;
}
/** He uniform init: U(-bound, bound), bound = gain·√(3/fan). PyTorch's Linear uses `a = √5`. */
export function kaiming_uniform_(t: Tensor, options: KaimingOptions = {}): Tensor {
  optionsObject(options);
  const h = target(t, "kaiming_uniform_");
  native.initKaimingUniform(h, kaimingDefaults(options));
  return t;
}
/** He normal init: N(0, std²), std = gain/√fan. */
export function kaiming_normal_(t: Tensor, options: KaimingOptions = {}): Tensor {
  optionsObject(options);
  const h = target(t, "kaiming_normal_");
  native.initKaimingNormal(h, kaimingDefaults(options));
  return t;
}
/** Glorot uniform init. */
export function xavier_uniform_(t: Tensor, gain = 1): Tensor {
  native.initXavierUniform(target(t, "xavier_uniform_"), finite("gain", gain));
  return t;
}
/** Glorot normal init. */
export function xavier_normal_(t: Tensor, gain = 1): Tensor {
  native.initXavierNormal(target(t, "xavier_normal_"), finite("gain", gain));
  return t;
}
/** (Semi-)orthogonal init. */
export function orthogonal_(t: Tensor, gain = 1): Tensor {
  native.initOrthogonal(target(t, "orthogonal_"), finite("gain", gain));
  return t;
}
