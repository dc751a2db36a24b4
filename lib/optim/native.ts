/**
 * The optimizer entry points of the native addon (native/optim.cc), as lib/optim uses them;
 * declared in lib/binding.ts. Each is one call over all parameters; `steps` arrays are updated
 * in place by the step calls.
 */
import { native, NativeBinding } from "../binding";

/** Native optimizer surface. */
export type OptimNative = Pick<NativeBinding, "adamwStep" | "sgdStep" | "clipGradNorm" | "zeroGrad" | "optimZerosLike">;

/** The addon seen through {@link OptimNative}. */
export const optimNative: OptimNative = native;
