/**
 * A tiny model whose module paths read as a Llama checkpoint's do
 * (`model.layers.0.self_attn.q_proj`, `model.layers.1.mlp.down_proj`, `lm_head`): for tests of
 * target selection, where the names matter and the sizes do not.
 */
import { Tensor, nn } from "../../lib";
import type { Dtype } from "../../lib";

class Attention extends nn.Module {
  q_proj: nn.Linear;
  k_proj: nn.Linear;
  v_proj: nn.Linear;
  o_proj: nn.Linear;
  constructor(d: number, dtype: Dtype) {
    super();
    this.q_proj = new nn.Linear(d, d, { bias: false, dtype });
    this.k_proj = new nn.Linear(d, d, { bias: false, dtype });
    this.v_proj = new nn.Linear(d, d, { bias: false, dtype });
    this.o_proj = new nn.Linear(d, d, { bias: false, dtype });
  }
}
class Mlp extends nn.Module {
  up_proj: nn.Linear;
  down_proj: nn.Linear;
  constructor(d: number, dtype: Dtype) {
    super();
    this.up_proj = new nn.Linear(d, 2 * d, { bias: false, dtype });
    this.down_proj = new nn.Linear(2 * d, d, { bias: false, dtype });
  }
}
class Layer extends nn.Module {
  self_attn: Attention;
  mlp: Mlp;
  constructor(d: number, dtype: Dtype) {
    super();
    this.self_attn = new Attention(d, dtype);
    this.mlp = new Mlp(d, dtype);
  }
}
class Body extends nn.Module {
  embed_tokens: nn.Embedding;
  layers: nn.ModuleList<Layer>;
  constructor(vocab: number, d: number, n: number, dtype: Dtype) {
    super();
    this.embed_tokens = new nn.Embedding(vocab, d, { dtype });
    this.layers = new nn.ModuleList(Array.from({ length: n }, () => new Layer(d, dtype)));
  }
}

/** `model.embed_tokens`, `model.layers.<i>.self_attn.{q,k,v,o}_proj`, `model.layers.<i>.mlp.{up,down}_proj`, `lm_head`. */
export class LlamaNames extends nn.Module {
  model: Body;
  lm_head: nn.Linear;
  constructor(options: { layers?: number; dim?: number; vocab?: number; dtype?: Dtype } = {}) {
    super();
    const { layers = 2, dim = 4, vocab = 10, dtype = "float32" } = options;
    this.model = new Body(vocab, dim, layers, dtype);
    this.lm_head = new nn.Linear(dim, vocab, { bias: false, dtype });
  }
  /** Runs the attention projections and the MLP of every layer as plain residual adds (names are what matter here). */
  override forward(ids: Tensor): Tensor {
    let h = this.model.embed_tokens.forward(ids);
    for (const l of this.model.layers) {
      const a = l.self_attn;
      h = h.add(a.o_proj.forward(a.q_proj.forward(h).add(a.k_proj.forward(h)).add(a.v_proj.forward(h))));
      h = h.add(l.mlp.down_proj.forward(l.mlp.up_proj.forward(h)));
    }
    return this.lm_head.forward(h);
  }
}
