/** The causal language-modelling loss of transformers' `*ForCausalLM` heads. */
import { crossEntropy } from "../functional";
import { Tensor } from "../tensor";

/**
 * Mean cross-entropy of predicting token t+1 from position t: logits `(B, T, V)` against
 * `labels (B, T)` shifted left by one, positions labelled -100 ignored (transformers' convention).
 */
export function causalLmLoss(logits: Tensor, labels: Tensor): Tensor {
  const [B, T, V] = logits.shape;
  const shifted = logits.narrow(1, 0, T - 1).reshape([B * (T - 1), V]);
  const targets = labels.narrow(1, 1, T - 1).reshape([B * (T - 1)]);
  return crossEntropy(shifted.to("float32"), targets, { ignoreIndex: -100 });
}
