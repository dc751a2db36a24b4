/**
 * The demo model: a small character-level language model in the style of Bengio et al. —
 * embed the last `context` characters, concatenate, one hidden layer, logits over the alphabet.
 */
import { Tensor, nn } from "../lib";

export interface CharModelOptions {
  vocab: number;
  context: number;
  embeddingDim: number;
  hidden: number;
}

export class CharModel extends nn.Module {
  emb: nn.Embedding;
  fc1: nn.Linear;
  act = new nn.ReLU();
  fc2: nn.Linear;
  readonly options: CharModelOptions;

  constructor(options: CharModelOptions) {
    super();
    this.options = options;
    this.emb = new nn.Embedding(options.vocab, options.embeddingDim);
    this.fc1 = new nn.Linear(options.context * options.embeddingDim, options.hidden);
    this.fc2 = new nn.Linear(options.hidden, options.vocab);
  }

  /** ids (N, context) int64 → logits (N, vocab). */
  override forward(ids: Tensor): Tensor {
    const [n] = ids.shape;
    const e = this.emb.forward(ids).reshape([n, this.options.context * this.options.embeddingDim]);
    return this.fc2.forward(this.act.forward(this.fc1.forward(e)));
  }
}
