/** Small models shared by the LoRA tests. */
import { Tensor, nn, noGrad, tensor } from "../../lib";
import type { Dtype } from "../../lib";
import { pseudoRandom } from "./gradcheck";

/** Embedding → Linear → ReLU → Linear, the shape of a tiny token classifier. */
export class TinyModel extends nn.Module {
  emb: nn.Embedding;
  fc1: nn.Linear;
  act: nn.Module;
  head: nn.Linear;

  /** `activation: false` leaves out the ReLU (libtorch 1.13 has no fp16 ReLU on CPU). */
  constructor(options: { vocab?: number; dim?: number; hidden?: number; paddingIdx?: number | null; dtype?: Dtype; activation?: boolean } = {}) {
    super();
    const { vocab = 12, dim = 8, hidden = 16, paddingIdx = null, dtype = "float32", activation = true } = options;
    this.emb = new nn.Embedding(vocab, dim, { paddingIdx, dtype });
    this.fc1 = new nn.Linear(dim, hidden, { dtype });
    this.act = activation ? new nn.ReLU() : new nn.Sequential();
    this.head = new nn.Linear(hidden, vocab, { dtype });
  }

  override forward(ids: Tensor): Tensor {
    return this.head.forward(this.act.forward(this.fc1.forward(this.emb.forward(ids))) as Tensor);
  }
}

/** A copy of every parameter's bytes, keyed by name: for bit-exact before/after comparisons. */
export function snapshot(module: nn.Module): Map<string, Buffer> {
  return new Map(module.namedParameters().map(([n, p]) => [n, p.toBytes()]));
}

/** Names of the parameters whose bytes differ between two snapshots. */
export function changedParameters(before: Map<string, Buffer>, after: Map<string, Buffer>): string[] {
  return [...before].filter(([n, b]) => !after.get(n)?.equals(b)).map(([n]) => n);
}

/** Sample mean and standard deviation of a tensor's values. */
export function stats(t: Tensor): { mean: number; std: number } {
  const v = Array.from(t.to({ dtype: "float64" }).toArray() as Float64Array);
  const mean = v.reduce((a, b) => a + b, 0) / v.length;
  const variance = v.reduce((a, b) => a + (b - mean) ** 2, 0) / (v.length - 1);
  return { mean, std: Math.sqrt(variance) };
}

/**
 * Gives every LoRA factor of `m` deterministic random values in [-scale, scale): an unmerged
 * adapter then changes the output, and both factors get a non-zero gradient.
 */
export function randomizeFactors(m: nn.Module, scale = 0.2): void {
  noGrad(() => {
    for (const [name, p] of m.namedParameters()) {
      if (name.includes("lora_")) p.copy_(tensor(pseudoRandom(p.numel, name.length), { shape: p.shape }).mul(scale));
    }
  });
}
