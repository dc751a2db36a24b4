/**
 * Parameter initialization: each function calls libtorch's `torch::nn::init` function of the
 * same name on the real tensor, in place, on any device and floating dtype, and returns it.
 */
import { native } from "./binding";
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
  return run(t, (h) => native.initNormal(h, mean, std));
}
/** Fills with samples of U(a, b). */
export function uniform_(t: Tensor, a = 0, b = 1): Tensor {
  return run(t, (h) => native.initUniform(h, a, b));
}
/** Fills with `value`. */
export function constant_(t: Tensor, value: number): Tensor {
  return run(t, (h) => native.initConstant(h, value));
}
/** Fills with exact zeros. */
export function zeros_(t: Tensor): Tensor {
  return run(t, (h) => native.initZeros(h));
}
/** Fills with ones. */
export function ones_(t: Tensor): Tensor {
  return run(t, (h) => native.initOnes(h));
}
/** He uniform init: U(-bound, bound), bound = gain·√(3/fan). PyTorch's Linear uses `a = √5`. */
export function kaiming_uniform_(t: Tensor, options: KaimingOptions = {}): Tensor {
  optionsObject(options);
  return run(t, (h) => native.initKaimingUniform(h, kaimingDefaults(options)));
}
/** He normal init: N(0, std²), std = gain/√fan. */
export function kaiming_normal_(t: Tensor, options: KaimingOptions = {}): Tensor {
  optionsObject(options);
  return run(t, (h) => native.initKaimingNormal(h, kaimingDefaults(options)));
}
/** Glorot uniform init. */
export function xavier_uniform_(t: Tensor, gain = 1): Tensor {
  return run(t, (h) => native.initXavierUniform(h, gain));
}
/** Glorot normal init. */
export function xavier_normal_(t: Tensor, gain = 1): Tensor {
  return run(t, (h) => native.initXavierNormal(h, gain));
}
/** (Semi-)orthogonal init. */
export function orthogonal_(t: Tensor, gain = 1): Tensor {
  return run(t, (h) => native.initOrthogonal(h, gain));
}
