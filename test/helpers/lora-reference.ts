/**
 * An independent LoRA forward for the merge-state tests: the base weights as they were before any
 * merge (a copy taken by the test) plus the adapter formula of DESIGN.md, computed with plain
 * tensor ops, never with the fused kernels or the merged weight.
 */
import { Tensor, init, lora, manualSeed, nn, noGrad, tensor } from "../../lib";

/** Embedding(10, 4) → Linear(4, 6): one layer of each LoRA kind. */
export class EmbFc extends nn.Module {
  emb = new nn.Embedding(10, 4);
  fc = new nn.Linear(4, 6);
  override forward(ids: Tensor): Tensor {
    return this.fc.forward(this.emb.forward(ids));
  }
}

/** Copies of the base parameters of an EmbFc, taken while nothing is merged. */
export interface Pristine {
  emb: Tensor;
  fcWeight: Tensor;
  fcBias: Tensor;
}

/** Where a layer of an injected EmbFc is, and its base layer. */
function layer(m: lora.LoraModel<EmbFc>, path: "emb" | "fc"): lora.LoraLayer<nn.Linear | nn.Embedding> {
  const found = m.loraLayers().find(([p]) => p === path);
  if (!found) throw new Error(`no LoRA layer at ${path}`);
  return found[1];
}

/** Copies the base weights (call while nothing is merged). */
export function pristineOf(m: lora.LoraModel<EmbFc>): Pristine {
  const emb = layer(m, "emb").base_layer as nn.Embedding;
  const fc = layer(m, "fc").base_layer as nn.Linear;
  return { emb: emb.weight.detach().clone(), fcWeight: fc.weight.detach().clone(), fcBias: fc.bias!.detach().clone() };
}

/** The adapters whose delta the layer's output must contain: merged ones and active ones, none when disabled. */
export function contributing(l: lora.LoraLayer<nn.Linear | nn.Embedding>): string[] {
  return l.disabled ? [] : [...new Set([...l.mergedAdapters, ...l.activeAdapters])];
}

/** y = W_fc (W_emb[ids] + Σ s·Aᵀ[ids] Bᵀ) + b + Σ s·(h Aᵀ) Bᵀ, from the pristine copies. */
export function referenceForward(m: lora.LoraModel<EmbFc>, pristine: Pristine, ids: number[], adapters?: { emb: string[]; fc: string[] }): Tensor {
  const idx = tensor(ids, { dtype: "int64" });
  const e = layer(m, "emb");
  const f = layer(m, "fc");
  let h = pristine.emb.indexSelect(0, idx);
  for (const n of adapters?.emb ?? contributing(e)) {
    const [A, B] = e.factors(n);
    h = h.add(A.detach().t().indexSelect(0, idx).matmul(B.detach().t()).mul(e.settings(n)!.scale));
  }
  let y = h.matmul(pristine.fcWeight.t()).add(pristine.fcBias);
  for (const n of adapters?.fc ?? contributing(f)) {
    const [A, B] = f.factors(n);
    y = y.add(h.matmul(A.detach().t()).matmul(B.detach().t()).mul(f.settings(n)!.scale));
  }
  return y;
}

/** The base weights' bytes (emb then fc weight), to compare bit for bit. */
export function baseBytes(m: lora.LoraModel<EmbFc>): string {
  return (["emb", "fc"] as const).map((p) => layer(m, p).base_layer.weight.toBytes().toString("hex")).join("|");
}

/** The pristine copies' bytes, in the order of {@link baseBytes}. */
export function pristineBytes(p: Pristine): string {
  return [p.emb, p.fcWeight].map((t) => t.toBytes().toString("hex")).join("|");
}

/** Saves an adapter of `config` on a fresh EmbFc (base seeded 100) whose factors are drawn from N(0, 0.3²) with `seed`. */
export function saveRandomAdapter(dir: string, config: lora.LoraConfig, seed: number): void {
  manualSeed(100);
  const lm = lora.injectAdapter(new EmbFc(), config);
  manualSeed(seed);
  for (const [, l] of lm.loraLayers()) for (const f of l.factors("default")) noGrad(() => init.normal_(f, 0, 0.3));
  lm.saveAdapter(dir);
}
