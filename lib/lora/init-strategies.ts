/**
 * Weight-aware LoRA initializations, with PEFT's `init_lora_weights` values and semantics:
 *
 * - `"pissa"`: SVD of the base weight W (fp32): A = √(S_r/s)·Vh_r, B = U_r·√(S_r/s), so that
 *   s·B·A is W's top-r part; W is replaced by the residual W − s·B·A (in its own dtype).
 * - `"pissa_niter_N"`: the same with `torch.svd_lowrank`'s randomized SVD (N power iterations).
 * - `"olora"`: QR of W (fp32): A = R[:r], B = Q[:, :r]; W ← W − s·B·A.
 * - `"orthogonal"`: A and B from the odd and even rows of one random orthogonal r×r matrix
 *   (B·A = 0 up to round-off, neither factor zero); W untouched; r must be even.
 *
 * They apply to Linear and Conv1D layers (Conv1D through its (in, out) layout). PEFT defines them
 * for no Embedding, so an Embedding target is refused by name. Each layer's init is one native
 * call (native/lora_init.cc) running torch::linalg on the weight's device.
 */
import { native } from "../binding";
import { ConfigError } from "../errors";
import { Tensor, handleOf } from "../tensor";

/** The `init_lora_weights` strings that rewrite the base weight or read it. */
export type WeightAwareInit = "pissa" | `pissa_niter_${number}` | "olora" | "orthogonal";

const PISSA_NITER = /^pissa_niter_(\d+)$/;

/** Whether `value` names one of the weight-aware inits (a valid `pissa_niter_N` included). */
export function isWeightAwareInit(value: unknown): value is WeightAwareInit {
  return value === "pissa" || value === "olora" || value === "orthogonal" || (typeof value === "string" && PISSA_NITER.test(value));
}

/** Whether the init replaces the base weight by a residual (PiSSA, OLoRA): such adapters need the converted save to apply to the original base. */
export function rewritesBaseWeight(value: unknown): boolean {
  return value === "olora" || (typeof value === "string" && value.startsWith("pissa"));
}

/** The native method and iteration count of an init (`niter` −1: exact SVD). */
function parseInit(init: WeightAwareInit): { method: "pissa" | "olora" | "orthogonal"; niter: number } {
  const m = PISSA_NITER.exec(init);
  if (m) return { method: "pissa", niter: Number(m[1]) };
  return { method: init as "pissa" | "olora" | "orthogonal", niter: -1 };
}

/**
 * Throws a ConfigError when `init` cannot apply to the layer at `path`: an Embedding (PEFT defines
 * these inits for Linear layers only), an odd rank for "orthogonal", or for PiSSA/OLoRA a rank above
 * min(out, in), where the decomposition has fewer than r components.
 */
export function checkWeightAwareInit(init: WeightAwareInit, path: string, kind: "linear" | "embedding", weightShape: number[], r: number): void {
  const where = path ? ` (layer ${path})` : "";
  if (kind === "embedding") {
    throw new ConfigError(
      `LoraConfig.initLoraWeights: "${init}" applies to Linear and Conv1D layers only (PEFT defines it for no Embedding)${where}; exclude the embedding from targetModules or use another init`,
    );
  }
  if (init === "orthogonal") {
    if (r % 2 !== 0) throw new ConfigError(`LoraConfig.r: "orthogonal" init needs an even rank, got ${r}${where}`);
    return;
  }
  const limit = Math.min(weightShape[0], weightShape[1]);
  if (r > limit) {
    throw new ConfigError(`LoraConfig.r: "${init}" init needs r <= min(out, in) = ${limit}, got ${r}${where}`);
  }
}

/** What {@link initFactorsFromWeight} works on. */
export interface WeightAwareInitTarget {
  /** The base weight: (out, in), or (in, out) when `fanInFanOut`. Rewritten in place for PiSSA/OLoRA. */
  weight: Tensor;
  /** lora_A, (r, in): written in place. */
  A: Tensor;
  /** lora_B, (out, r): written in place. */
  B: Tensor;
  fanInFanOut: boolean;
  /** The adapter's scaling s (alpha / r, or alpha / √r with rsLoRA). */
  scale: number;
}

/** Initializes one layer's factors (and for PiSSA/OLoRA its base weight) as `init` says; one native call. */
export function initFactorsFromWeight(init: WeightAwareInit, t: WeightAwareInitTarget): void {
  const { method, niter } = parseInit(init);
  native.loraInitFromWeight({
    weight: handleOf(t.weight),
    A: handleOf(t.A),
    B: handleOf(t.B),
    method,
    niter,
    scale: t.scale,
    fanInFanOut: t.fanInFanOut,
  });
}
