/**
 * transformers' `_init_weights` for the causal LMs built from a config: Linear, Conv1D and
 * Embedding weights from N(0, initializer_range²) (an embedding's padding row zero), biases zero,
 * norm weights one and LayerNorm biases zero; GPT-2 also scales its residual projections
 * (`c_proj.weight`) to std initializer_range / √(2·n_layer), as GPT-2's paper does, so that the
 * residual stream's variance does not grow with depth.
 */
import * as init from "../init";
import { Conv1D, Embedding, LayerNorm, Linear, Module, RMSNorm } from "../nn";
import { Tensor, noGrad } from "../tensor";
import type { GPT2Config, LlamaConfig } from "./config";

/**
 * Initializes `model`'s parameters as transformers does for its config; with `only`, just the
 * state-dict keys it names (the keys a non-strict load found missing).
 */
export function initCausalLMWeights(model: Module, config: GPT2Config | LlamaConfig, only: ReadonlySet<string> | null = null): void {
  const std = config.initializer_range;
  const residualStd = config.model_type === "gpt2" ? std / Math.sqrt(2 * (config as GPT2Config).n_layer) : std;
  // A tied lm_head shares the embedding's tensor: it is filled once.
  const done = new Set<Tensor>();
  const fill = (key: string, t: Tensor | null, how: (t: Tensor) => void) => {
    if (!t || done.has(t) || (only && !only.has(key))) return;
    done.add(t);
    how(t);
  };
  noGrad(() => {
    for (const [prefix, m] of model.namedModules()) {
      const key = (name: string) => (prefix ? `${prefix}.${name}` : name);
      if (m instanceof Linear || m instanceof Conv1D) {
        const weightStd = config.model_type === "gpt2" && prefix.endsWith(".c_proj") ? residualStd : std;
        fill(key("weight"), m.weight, (t) => init.normal_(t, 0, weightStd));
        fill(key("bias"), m.bias, (t) => init.zeros_(t));
      } else if (m instanceof Embedding) {
        fill(key("weight"), m.weight, (t) => {
          init.normal_(t, 0, std);
          if (m.paddingIdx === null) return;
          const row = t.narrow(0, m.paddingIdx, 1);
          init.zeros_(row);
          row.dispose();
        });
      } else if (m instanceof LayerNorm) {
        fill(key("weight"), m.weight, (t) => init.ones_(t));
        fill(key("bias"), m.bias, (t) => init.zeros_(t));
      } else if (m instanceof RMSNorm) {
        fill(key("weight"), m.weight, (t) => init.ones_(t));
      }
    }
  });
}
