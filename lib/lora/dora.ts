/**
 * DoRA (PEFT's `use_dora`): each adapter also trains a magnitude vector m, one entry per output
 * feature, and the adapted weight is m ⊙ (W + s·B·A) / ‖W + s·B·A‖ (norm per output feature,
 * treated as a constant in backward). m starts at ‖W + s·B·A‖, so at step 0 the layer gives the
 * plain LoRA output. The math lives in native/lora_dora.cc; these are its typed calls.
 *
 * As in PEFT, the magnitude is saved as `<module path>.lora_magnitude_vector`. Unlike PEFT, a
 * layer's DoRA adapter runs only as its single active adapter (PEFT's stacked forward, where a
 * DoRA adapter rescales the other adapters' outputs, is refused rather than reproduced).
 */
import { DoraMergeOptions, native } from "../binding";
import { Tensor, handleOf } from "../tensor";

/** What the DoRA calls need from a layer and one adapter. */
export interface DoraTarget {
  weight: Tensor;
  A: Tensor;
  B: Tensor;
  scale: number;
  /** The base weight is stored (in, out) (Conv1D). */
  fanInFanOut: boolean;
  /** An Embedding layer (its weight is (V, d); the output features are its d columns). */
  embedding: boolean;
}

/** The initial magnitude ‖W + s·B·A‖ per output feature, in the weight's dtype. */
export function doraInitialMagnitude(t: DoraTarget): Tensor {
  return new Tensor(
    native.loraDoraMagnitude({
      weight: handleOf(t.weight),
      A: handleOf(t.A),
      B: handleOf(t.B),
      scale: t.scale,
      fanInFanOut: t.fanInFanOut,
      embedding: t.embedding,
    }),
  );
}

/** The DoRA Linear forward (one native call). */
export function doraLinear(x: Tensor, t: DoraTarget, bias: Tensor | null, magnitude: Tensor, training: boolean, dropout: number): Tensor {
  return new Tensor(
    native.loraDoraLinear({
      x: handleOf(x, "input"),
      weight: handleOf(t.weight),
      bias: bias ? handleOf(bias) : null,
      fanInFanOut: t.fanInFanOut,
      training,
      A: handleOf(t.A),
      B: handleOf(t.B),
      magnitude: handleOf(magnitude),
      scale: t.scale,
      dropout,
    }),
  );
}

/** The DoRA Embedding forward (one native call). */
export function doraEmbedding(ids: Tensor, t: DoraTarget, paddingIdx: number | null, magnitude: Tensor): Tensor {
  return new Tensor(
    native.loraDoraEmbedding({
      ids: handleOf(ids, "ids"),
      weight: handleOf(t.weight),
      paddingIdx: paddingIdx ?? -1,
      A: handleOf(t.A),
      B: handleOf(t.B),
      magnitude: handleOf(magnitude),
      scale: t.scale,
    }),
  );
}

/**
 * The native request that merges one DoRA adapter: W ← (m/n) ⊙ (W + s·B·A), in place with
 * `loraDoraMerge` or on a worker with `loraDoraMergeAsync`. With `keepBackup` the weight takes a
 * new buffer and the pristine one comes back (for the bit-exact unmerge); `safe` refuses NaN/Inf.
 */
export function doraMergeRequest(t: DoraTarget, magnitude: Tensor, safe: boolean, keepBackup: boolean): DoraMergeOptions {
  return {
    weight: handleOf(t.weight),
    A: handleOf(t.A),
    B: handleOf(t.B),
    magnitude: handleOf(magnitude),
    scale: t.scale,
    fanInFanOut: t.fanInFanOut,
    embedding: t.embedding,
    safe,
    keepBackup,
  };
}
