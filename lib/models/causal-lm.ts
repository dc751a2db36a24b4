/**
 * The base of the causal language models: the logits and the training loss, generation with a
 * key/value cache (greedy or sampled, batched with left padding, synchronous or streamed) and
 * saving in transformers' layout. Subclasses supply the config, the decoder (`hiddenStates`)
 * and `lm_head`.
 */
import { native } from "../binding";
import { describe } from "../errors";
import { linearCrossEntropy } from "../linear-cross-entropy";
import type { Linear } from "../nn/layers";
import { Module } from "../nn/module";
import { tidy } from "../scope";
import { Tensor, cat, handleOf, noGrad, ones, tensor, optionsObject } from "../tensor";
import type { GPT2Config, LlamaConfig } from "./config";
import { CausalLMForwardOptions, KVCache, keptPositions } from "./context";
import { isPlainHead } from "./head";
import { HeadColumns, transposableHead } from "./head-columns";
import { causalLmLoss } from "./loss";
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
  /**
   * For a float32 model on the CPU: keep a transposed copy of the output head's weight between
   * calls (one more head's memory, `V × d` floats), over which each token's logits take about
   * half the time at a large vocabulary. It is made again when the weight changes. Default
   * true; false frees it and decodes over the weight itself.
   */
  transposedHead?: boolean;
}

function tokenList(value: unknown, caller: string): number[] {
  if (value === undefined || value === null) return [];
  const list = Array.isArray(value) ? value : [value];
  if (!list.every((v) => Number.isInteger(v) && v >= 0))
    throw new TypeError(`${caller}: eosTokenId: expected a token id or a list of them, got ${describe(value)}`);
  return list as number[];
}

/** Options of {@link CausalLM.loss}. */
export interface CausalLMLossOptions {
  /**
   * `(B, T)` int64: position t is trained to predict `labels[t + 1]`, and labels of -100 do not
   * count (transformers' `labels`, shifted inside as there). Default: `ids` themselves.
   */
  labels?: Tensor;
  /** `(B, T)` 1 for tokens, 0 for padding, as in {@link CausalLMForwardOptions}. Padded labels still count unless they are -100. */
  attentionMask?: Tensor | null;
}

/**
 * Whether the chunked loss may stand in for `head`: a plain Linear in a dtype it multiplies in
 * (libtorch has no fp16 GEMM on CPU, and the unfused loss rounds fp64 logits to fp32).
 */
function chunkableHead(head: unknown, hidden: Tensor): head is Linear {
  if (!isPlainHead(head)) return false;
  const { weight, bias } = head;
  if (weight.dtype !== hidden.dtype || weight.device !== hidden.device || (bias && bias.dtype !== weight.dtype)) return false;
  return hidden.dtype === "float32" || hidden.dtype === "bfloat16" || (hidden.dtype === "float16" && hidden.device !== "cpu");
}

/** A decoder-only language model in transformers' layout. */
export abstract class CausalLM extends Module {
  abstract readonly config: GPT2Config | LlamaConfig;
  /** The output projection `hidden → vocab` (tied to the input embedding when the config says so). */
  abstract lm_head: Linear;
  /** The head's weight transposed for decoding (see {@link GenerateOptions.transposedHead}). */
  readonly #headColumns = new HeadColumns();

  /**
   * The decoder's output `(B, T, E)` for `ids (B, T)`: the embeddings, every layer and the final
   * norm, without the head. Appends this forward's keys and values to `options.cache` when given.
   */
  protected abstract hiddenStates(ids: Tensor, options: CausalLMForwardOptions, caller: string): Tensor;

  /** The logits `(B, T, V)` of `ids (B, T)` (the last `logitsToKeep` positions when asked). */
  override forward(ids: Tensor, options: CausalLMForwardOptions = {}): Tensor {
    const caller = `${this.constructor.name}.forward`;
    return this.lm_head.forward(keptPositions(this.hiddenStates(ids, options, caller), options, caller));
  }

  /**
   * The causal-LM training loss of `ids`, as transformers' `model(ids, labels=labels).loss`: the
   * same number as `causalLmLoss(model.forward(ids), labels)`, computed without the `(B, T, V)`
   * logits. The head's product and the cross-entropy go through `linearCrossEntropy` chunk by
   * chunk, which at a large vocabulary saves most of the memory and time that the logits cost
   * (GPT-2's head makes 200 MB of them per 1024 tokens). An adapter on `lm_head`, fp16 on the
   * CPU and fp64 take the unfused path, with the same result.
   *
   * The head's gradient is computed during this call when autograd records it: evaluate in `noGrad`.
   *
   * @example
   * const loss = tidy(() => { const l = lm.model.loss(ids); l.backward(); return l.item(); });
   */
  loss(ids: Tensor, options: CausalLMLossOptions = {}): Tensor {
    const caller = `${this.constructor.name}.loss`;
    optionsObject(options, `${caller}: options`);
    if (!(ids instanceof Tensor) || ids.ndim !== 2 || ids.dtype !== "int64")
      throw new TypeError(`${caller}: ids: expected an int64 Tensor (B, T), got ${describe(ids)}`);
    const labels = options.labels ?? ids;
    if (!(labels instanceof Tensor) || labels.dtype !== "int64" || labels.shape.join() !== ids.shape.join())
      throw new TypeError(`${caller}: labels: expected an int64 Tensor of the ids' shape [${ids.shape.join(", ")}], got ${describe(labels)}`);
    if (labels.device !== ids.device) throw new Error(`${caller}: labels are on ${labels.device} but ids are on ${ids.device}`);
    const hidden = this.hiddenStates(ids, { attentionMask: options.attentionMask }, caller);
    const head: Module = this.lm_head;
    if (!chunkableHead(head, hidden)) return causalLmLoss(head.forward(hidden) as Tensor, labels);
    const [B, T, E] = hidden.shape;
    const shifted = hidden.narrow(1, 0, T - 1);
    const rows = shifted.reshape([B * (T - 1), E]);
    const next = labels.narrow(1, 1, T - 1);
    const targets = next.reshape([B * (T - 1)]);
    try {
      return linearCrossEntropy(rows, head.weight, targets, { bias: head.bias });
    } finally {
      // autograd holds what it needs; these handles would otherwise wait for the collector
      for (const t of new Set([hidden, shifted, rows, next, targets])) t.dispose();
    }
  }

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
      const transposedHead = options.transposedHead ?? true;
      if (typeof transposedHead !== "boolean") throw new TypeError(`${caller}: transposedHead: expected a boolean, got ${describe(transposedHead)}`);
      for (let step = 0; step < maxNewTokens; step++) {
        // looked up each step (one version read): a stream sees weights written between its steps
        const columns = this.#decodingHead(transposedHead);
        const chosen = noGrad(() =>
          tidy(() => {
            const logits = this.#lastLogits(input, { attentionMask: mask, cache }, columns, caller);
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

  /** The transposed head to decode with, or null to use `lm_head` itself. */
  #decodingHead(wanted: boolean): Tensor | null {
    if (!wanted || !transposableHead(this.lm_head)) {
      this.#headColumns.release();
      return null;
    }
    return this.#headColumns.of(this.lm_head.weight);
  }

  /** One decoding step's logits `(B, 1, V)`: the last position only, through `columns` when given. */
  #lastLogits(input: Tensor, options: CausalLMForwardOptions, columns: Tensor | null, caller: string): Tensor {
    if (!columns) return this.forward(input, { ...options, logitsToKeep: 1 });
    const hidden = keptPositions(this.hiddenStates(input, options, caller), { logitsToKeep: 1 }, caller);
    const bias = this.lm_head.bias;
    // hidden · (d, V) + b: one gemv per row over the columns (GPT-2's Conv1D product)
    return new Tensor(native.linearInOut(handleOf(hidden), handleOf(columns), bias ? handleOf(bias) : null));
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
