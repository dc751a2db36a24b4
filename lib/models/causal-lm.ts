/**
 * The base of the causal language models: generation with a key/value cache (greedy or
 * sampled, batched with left padding, synchronous or streamed) and saving in transformers'
 * layout. Subclasses supply the config and `forward(ids, { attentionMask, cache })`.
 */
import { describe } from "../errors";
import { Module } from "../nn/module";
import { tidy } from "../scope";
import { Tensor, cat, noGrad, ones, tensor, optionsObject } from "../tensor";
import type { GPT2Config, LlamaConfig } from "./config";
import { CausalLMForwardOptions, KVCache } from "./context";
import { SamplingOptions, nextTokens, resolveSampler } from "./sampling";
import { SavePretrainedOptions, savePretrained } from "./save";

/** Options of {@link CausalLM.generate} and {@link CausalLM.stream}. */
export interface GenerateOptions extends SamplingOptions {
  /** Tokens to generate at most. Default 20. */
  maxNewTokens?: number;
  /** A row stops after producing this token (or any of these); later steps give it `padTokenId`. Default: none. */
  eosTokenId?: number | number[] | null;
  /** What finished rows receive. Default: the first `eosTokenId`, else 0. */
  padTokenId?: number;
  /** `(B, T)` 1 for tokens, 0 for (left) padding. Default: all ones. */
  attentionMask?: Tensor | null;
}

function tokenList(value: unknown, caller: string): number[] {
  if (value === undefined || value === null) return [];
  const list = Array.isArray(value) ? value : [value];
  if (!list.every((v) => Number.isInteger(v) && v >= 0))
    throw new TypeError(`${caller}: eosTokenId: expected a token id or a list of them, got ${describe(value)}`);
  return list as number[];
}

/** A decoder-only language model in transformers' layout. */
export abstract class CausalLM extends Module {
  abstract readonly config: GPT2Config | LlamaConfig;

  /** The logits `(B, T, V)` of `ids (B, T)`. */
  abstract override forward(ids: Tensor, options?: CausalLMForwardOptions): Tensor;

  /** The number of transformer layers, i.e. of key/value cache entries. */
  get numLayers(): number {
    const c = this.config;
    return c.model_type === "gpt2" ? (c as GPT2Config).n_layer : (c as LlamaConfig).num_hidden_layers;
  }

  /**
   * Continues `ids (B, T)` by up to `maxNewTokens` tokens and returns `(B, T + n)` (int64).
   * Runs without autograd, one forward over the new token per step thanks to a per-layer
   * key/value cache; each step's intermediates are freed at once. Greedy unless sampling is
   * asked for (see {@link SamplingOptions}); sampling draws from libtorch's generator, so
   * `manualSeed` makes it repeatable. Rows may be left-padded, with `attentionMask`.
   */
  generate(ids: Tensor, options: GenerateOptions = {}): Tensor {
    const steps: Tensor[] = [];
    try {
      for (const step of this.#decode(ids, options, "generate")) steps.push(tensor(step, { dtype: "int64", device: ids.device }).unsqueeze(1));
      return cat([ids, ...steps], 1);
    } finally {
      for (const t of steps) t.dispose();
    }
  }

  /**
   * {@link generate} as an async iterator: one array per step, holding each row's new token.
   * The event loop runs between steps.
   *
   * @example for await (const [token] of model.stream(ids, { maxNewTokens: 50 })) process.stdout.write(tokenizer.decode([token]));
   */
  async *stream(ids: Tensor, options: GenerateOptions = {}): AsyncGenerator<number[]> {
    for (const step of this.#decode(ids, options, "stream")) {
      yield step;
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }

  /** The decoding loop: yields each step's tokens, one per row. */
  *#decode(ids: Tensor, options: GenerateOptions, name: string): Generator<number[]> {
    const caller = `${this.constructor.name}.${name}`;
    optionsObject(options, `${caller}: options`);
    if (!(ids instanceof Tensor) || ids.ndim !== 2 || ids.dtype !== "int64")
      throw new TypeError(`${caller}: ids: expected an int64 Tensor (B, T), got ${describe(ids)}`);
    const maxNewTokens = options.maxNewTokens ?? 20;
    if (!Number.isInteger(maxNewTokens) || maxNewTokens < 0)
      throw new RangeError(`${caller}: maxNewTokens: expected an integer >= 0, got ${describe(options.maxNewTokens)}`);
    const sampler = resolveSampler(options, caller);
    const eos = tokenList(options.eosTokenId, caller);
    const pad = options.padTokenId ?? eos[0] ?? 0;
    const B = ids.shape[0];
    const device = ids.device;
    const cache = new KVCache(this.numLayers, { capacity: ids.shape[1] + Math.max(maxNewTokens, 1) });
    const finished = new Array<boolean>(B).fill(false);
    let mask = options.attentionMask ?? null;
    let input = ids;
    const wasTraining = this.training;
    this.eval();
    try {
      for (let step = 0; step < maxNewTokens; step++) {
        const chosen = noGrad(() =>
          tidy(() => {
            const logits = this.forward(input, { attentionMask: mask, cache, logitsToKeep: 1 });
            return nextTokens(logits.squeeze(1), sampler).toList() as number[];
          }),
        );
        const tokens = chosen.map((t, b) => (finished[b] ? pad : t));
        tokens.forEach((t, b) => (finished[b] ||= eos.includes(t)));
        yield tokens;
        if (finished.every(Boolean)) break;
        if (input !== ids) input.dispose();
        input = tensor(tokens, { dtype: "int64", device }).unsqueeze(1);
        if (mask) {
          const grown = cat([mask, ones([B, 1], { dtype: mask.dtype, device })], 1);
          if (mask !== options.attentionMask) mask.dispose();
          mask = grown;
        }
      }
    } finally {
      cache.dispose();
      if (input !== ids) input.dispose();
      if (mask && mask !== options.attentionMask) mask.dispose();
      this.train(wasTraining);
    }
  }

  /**
   * Writes config.json and the weights as transformers does: `model.safetensors`, or shards
   * `model-0000i-of-0000n.safetensors` with `model.safetensors.index.json` when the weights are
   * larger than `maxShardSize`. A tied `lm_head.weight` is not written (transformers ties it again on load).
   */
  async savePretrained(dir: string, options: SavePretrainedOptions = {}): Promise<void> {
    const skip = this.config.tie_word_embeddings ? ["lm_head.weight"] : [];
    await savePretrained(dir, this.config.toJSON(), this.stateDict(), skip, options);
  }
}
