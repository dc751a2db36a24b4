/**
 * The optimizer entry points of the native addon (native/optim.cc), typed once for lib/optim.
 * Each is one call over all parameters; `steps` arrays are updated in place by the step calls.
 */
import { native, NativeTensor } from "../binding";

type H = NativeTensor;

/** Native optimizer surface. */
export interface OptimNative {
  adamwStep(
    params: H[], expAvg: H[], expAvgSq: H[], maxExpAvgSq: H[], steps: Float64Array,
    lr: number, beta1: number, beta2: number, eps: number, weightDecay: number, amsgrad: boolean, maximize: boolean,
  ): number;
  sgdStep(
    params: H[], momentumBuffers: H[], steps: Float64Array,
    lr: number, momentum: number, dampening: number, weightDecay: number, nesterov: boolean, maximize: boolean,
  ): number;
  clipGradNorm(params: H[], maxNorm: number, normType: number, errorIfNonfinite: boolean): number;
  zeroGrad(params: H[], setToNone: boolean): void;
  optimZerosLike(params: H[]): H[];
}

/** The addon seen through {@link OptimNative}. */
export const optimNative = native as unknown as OptimNative;
