/**
 * LoRA outputs computed from a model's tensors with plain ops (index_select, matmul, add, relu),
 * never through the fused LoRA kernels or the merge: the independent side of comparisons whose
 * other side runs those kernels (on the GPU, or on the CPU when the CUDA tests rehearse there).
 */
import { Tensor, lora, nn } from "../../lib";

function scale(layer: lora.LoraLayer<never>): number {
  return layer.settings("default")!.scale;
}

/** y = x Wᵀ + b + s·(x Aᵀ) Bᵀ for a LoRA Linear (no dropout). */
export function linearByFormula(layer: lora.LoraLinear, x: Tensor): Tensor {
  const [A, B] = layer.factors("default");
  const base = layer.base_layer as nn.Linear;
  const y = x.matmul(base.weight.t()).add(
    x
      .matmul(A.t())
      .matmul(B.t())
      .mul(scale(layer as never)),
  );
  return base.bias ? y.add(base.bias) : y;
}

/** y = W[ids] + s·(Aᵀ[ids]) Bᵀ for a LoRA Embedding (no padding index). */
export function embeddingByFormula(layer: lora.LoraEmbedding, ids: Tensor): Tensor {
  const [A, B] = layer.factors("default");
  const flat = ids.reshape([-1]);
  const rows = layer.base_layer.weight.indexSelect(0, flat).add(
    A.t()
      .indexSelect(0, flat)
      .matmul(B.t())
      .mul(scale(layer as never)),
  );
  return rows.reshape([...ids.shape, -1]);
}

/** A TinyModel (emb → fc1 → ReLU → head) with the "default" adapter on all three layers. */
export function tinyByFormula(lm: lora.LoraModel, ids: Tensor): Tensor {
  const layers = Object.fromEntries(lm.loraLayers());
  const h = embeddingByFormula(layers.emb as lora.LoraEmbedding, ids);
  return linearByFormula(layers.head as lora.LoraLinear, linearByFormula(layers.fc1 as lora.LoraLinear, h).relu());
}

/** The weight a merge must produce: W + s·BA, transposed (s·(BA)ᵀ) for embeddings. */
export function mergedByFormula(layer: lora.LoraLayer<never>, pristine: Tensor): Tensor {
  const [A, B] = layer.factors("default").map((t) => t.detach());
  const delta = B.matmul(A).mul(scale(layer));
  return pristine.add(layer instanceof lora.LoraEmbedding ? delta.t() : delta);
}
