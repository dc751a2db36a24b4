/** Layers and native handles the LoRA cases share: built the way a user would build them. */
import { NativeTensor } from "../../lib/binding";
import { Tensor, handleOf } from "../../lib/tensor";
import { Embedding, Linear } from "../../lib/nn/layers";
import { LoraEmbedding, LoraLinear } from "../../lib/lora/layers";

export { benchNative } from "../addon";

const INIT = { initLoraWeights: true, embeddingInit: "a-normal", embeddingInitStd: 1 } as const;

/** A frozen Linear(dim, dim) with one adapter of rank r (alpha = r: scale 1). */
export function loraLinear(inFeatures: number, outFeatures: number, r: number, dtype: "float32" | "bfloat16" = "float32"): LoraLinear {
  const base = new Linear(inFeatures, outFeatures, { dtype });
  base.weight.requiresGrad = false;
  if (base.bias) base.bias.requiresGrad = false;
  const layer = new LoraLinear(base);
  layer.addAdapter("default", { r, alpha: r, scale: 1, dropout: 0 }, INIT);
  return layer;
}

/** A frozen Embedding(vocab, dim) with one adapter of rank r. */
export function loraEmbedding(vocab: number, dim: number, r: number): LoraEmbedding {
  const base = new Embedding(vocab, dim);
  base.weight.requiresGrad = false;
  const layer = new LoraEmbedding(base);
  layer.addAdapter("default", { r, alpha: r, scale: 1, dropout: 0 }, INIT);
  return layer;
}

/** Handles of a layer's base weight, bias and the default adapter's factors. */
export function handles(layer: LoraLinear | LoraEmbedding): { w: NativeTensor; b: NativeTensor | null; A: NativeTensor; B: NativeTensor } {
  const [A, B] = layer.factors("default");
  const bias = (layer.base_layer as { bias?: Tensor | null }).bias;
  return { w: handleOf(layer.base_layer.weight), b: bias ? handleOf(bias) : null, A: handleOf(A), B: handleOf(B) };
}
