/** The output projection of a causal LM: its own weight, or the input embedding's (tied). */
import { Linear } from "../nn/layers";
import { Tensor } from "../tensor";
import type { ModelFactoryOptions } from "./gpt2";

/**
 * `lm_head`: a bias-free Linear `hidden → vocab`. When tied, it holds the embedding's tensor
 * itself (one tensor under two names, as transformers ties them), and its own vocab × hidden
 * weight is never allocated: building a 1 × 1 Linear and taking the embedding's tensor keeps the
 * peak memory of building (and loading) a model at its size.
 */
export function outputHead(hidden: number, vocab: number, tiedTo: Tensor | null, options: ModelFactoryOptions): Linear {
  if (!tiedTo) return new Linear(hidden, vocab, { bias: false, ...options });
  const head = new Linear(1, 1, { bias: false, ...options });
  head.weight.dispose();
  head.weight = tiedTo;
  Object.assign(head, { inFeatures: hidden, outFeatures: vocab });
  return head;
}

/**
 * Whether `head` is a plain Linear, whose forward is exactly `linear(x, weight, bias)`: the case
 * the chunked loss and the transposed decoding head may compute themselves (an adapter on the
 * head has its own forward).
 */
export function isPlainHead(head: unknown): head is Linear {
  return Object.getPrototypeOf(head) === Linear.prototype;
}
