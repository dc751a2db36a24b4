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

/** `h`, the handle of `t`, once `t` is known to be floating-point (libtorch's fill functions take integers too). */
function floating(t: Tensor, h: NativeTensor): NativeTensor {
  if (!isFloatingDtype(t.dtype)) throw new TypeError(`tensor: init functions need a floating-point tensor, got ${t.dtype}`);
  return h;
}

/** As {@link floating}, and `t` has the 2 dims that `fn` computes its fans from (libtorch's message names no argument). */
function withFans(fn: string, t: Tensor, h: NativeTensor): NativeTensor {
  floating(t, h);
  if (t.ndim < 2) throw new RangeError(`${fn}: fan in and fan out cannot be computed for a tensor with fewer than 2 dimensions (got ${t.ndim})`);
  return h;
}

/** Throws a RangeError naming `name` unless `value` is finite; returns it. */
function finite(name: string, value: number): number {
  if (typeof value === "number" && !Number.isFinite(value)) throw new RangeError(`${name}: expected a finite number, got ${describe(value)}`);
  return value;
}

/** Options of {@link kaiming_uniform_} and {@link kaiming_normal_}; defaults as in PyTorch. */
export interface KaimingOptions {
  a?: number;
  mode?: FanMode;
  nonlinearity?: Nonlinearity;
}

/** PyTorch's defaults filled in. */
function kaimingDefaults(options: KaimingOptions): Required<KaimingOptions> {
  return { a: options.a ?? 0, mode: options.mode ?? "fan_in", nonlinearity: options.nonlinearity ?? "leaky_relu" };
}

// Depth of nested withoutInit() calls: above 0, every initializer leaves its tensor as it is.
let skipping = 0;

function run(t: Tensor, fn: (h: ReturnType<typeof handleOf>) => unknown): Tensor {
  if (skipping === 0) fn(handleOf(t));
  return t;
}

/**
 * Runs `build` with every initializer of this module a no-op, so that the parameters it creates
 * keep the uninitialized memory `empty` gave them (as transformers' `no_init_weights`): for a
 * model whose weights are read from a file next, which then costs neither the time of a random
 * init nor the pages it would touch. Whatever `build` leaves unfilled holds garbage.
 */
export function withoutInit<T>(build: () => T): T {
  skipping++;
  try {
    return build();
  } finally {
    skipping--;
  }
}

/** Fills with samples of N(mean, std²). */
export function normal_(t: Tensor, mean = 0, std = 1): Tensor {
  return run(t, (h) => {
    const filled = floating(t, h);
    finite("mean", mean);
    if (finite("std", std) < 0) throw new RangeError(`std: must be >= 0, got ${describe(std)}`);
    native.initNormal(filled, mean, std);
  });
}
/** Fills with samples of U(a, b). */
export function uniform_(t: Tensor, a = 0, b = 1): Tensor {
  return run(t, (h) => {
    const filled = floating(t, h);
    if (finite("a", a) > finite("b", b)) throw new RangeError(`uniform_: a must be <= b, got a=${describe(a)} b=${describe(b)}`);
    native.initUniform(filled, a, b);
  });
}
/** Fills with `value`. */
export function constant_(t: Tensor, value: number): Tensor {
  return run(t, (h) => native.initConstant(floating(t, h), value));
}
/** Fills with exact zeros. */
export function zeros_(t: Tensor): Tensor {
  return run(t, (h) => native.initZeros(floating(t, h)));
}
/** Fills with ones. */
export function ones_(t: Tensor): Tensor {
  return run(t, (h) => native.initOnes(floating(t, h)));
}
/** He uniform init: U(-bound, bound), bound = gain·√(3/fan). PyTorch's Linear uses `a = √5`. */
export function kaiming_uniform_(t: Tensor, options: KaimingOptions = {}): Tensor {
  optionsObject(options);
  return run(t, (h) => {
    const filled = withFans("kaiming_uniform_", t, h);
    const kaiming = kaimingDefaults(options);
    finite("a", kaiming.a);
    native.initKaimingUniform(filled, kaiming);
  });
}
/** He normal init: N(0, std²), std = gain/√fan. */
export function kaiming_normal_(t: Tensor, options: KaimingOptions = {}): Tensor {
  optionsObject(options);
  return run(t, (h) => {
    const filled = withFans("kaiming_normal_", t, h);
    const kaiming = kaimingDefaults(options);
    finite("a", kaiming.a);
    native.initKaimingNormal(filled, kaiming);
  });
}
/** Glorot uniform init. */
export function xavier_uniform_(t: Tensor, gain = 1): Tensor {
  return run(t, (h) => native.initXavierUniform(withFans("xavier_uniform_", t, h), finite("gain", gain)));
}
/** Glorot normal init. */
export function xavier_normal_(t: Tensor, gain = 1): Tensor {
  return run(t, (h) => native.initXavierNormal(withFans("xavier_normal_", t, h), finite("gain", gain)));
}
/** (Semi-)orthogonal init. */
export function orthogonal_(t: Tensor, gain = 1): Tensor {
  return run(t, (h) => native.initOrthogonal(withFans("orthogonal_", t, h), finite("gain", gain)));
}
