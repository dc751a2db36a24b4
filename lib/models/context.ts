/**
 * What every layer of a causal language model needs for one forward: which keys each query may
 * see (causal, padding), the token positions, and the key/value cache of earlier steps.
 * Built once per forward, so the layers do no mask arithmetic of their own.
 */
import { scaledDotProductAttention } from "../attention";
import { native } from "../binding";
import { describe } from "../errors";
import { keep } from "../scope";
import { Tensor, arange, cat, empty, handleOf, isGradEnabled, optionsObject } from "../tensor";

/** What {@link KVCache.attend} passes on to the attention of one layer. */
export interface CachedAttentionOptions {
  mask: Tensor | null;
  causal: boolean;
  /** Attention dropout (training only); a step with dropout or gradients takes the copying path. */
  dropoutP: number;
}

/**
 * Cached keys and values of every layer, `(B, Hkv, S, D)`, growing by one forward at a time.
 *
 * Decoding without gradients (generation) writes each step's keys and values in place into
 * buffers preallocated for `capacity` tokens (doubled when a step overflows them) and attends
 * over a view of their first S positions: one native call per layer and step, nothing copied.
 * A forward that records gradients instead concatenates, as transformers' cache does, so that
 * no tensor autograd saved is overwritten later.
 */
export class KVCache {
  #k: (Tensor | null)[];
  #v: (Tensor | null)[];
  /** Whether layer i's tensors are this cache's own buffers, writable in place past `length`. */
  #owned: boolean[];
  readonly #capacity: number;
  /** Tokens already cached (S). */
  length = 0;

  /**
   * @param numLayers One cache entry per transformer layer.
   * @param options.capacity Tokens to preallocate room for (prompt + new tokens; default 64). A
   *   longer sequence still fits: the buffers grow, by copying, when a step overflows them.
   */
  constructor(numLayers: number, options: { capacity?: number } = {}) {
    if (!Number.isInteger(numLayers) || numLayers < 1) throw new RangeError(`KVCache: numLayers: expected a positive integer, got ${describe(numLayers)}`);
    optionsObject(options);
    const capacity = options.capacity ?? 64;
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`KVCache: capacity: expected a positive integer, got ${describe(options.capacity)}`);
    this.#capacity = capacity;
    this.#k = new Array<Tensor | null>(numLayers).fill(null);
    this.#v = new Array<Tensor | null>(numLayers).fill(null);
    this.#owned = new Array<boolean>(numLayers).fill(false);
  }

  /** Appends this step's keys and values for `layer` (by concatenation); returns the whole sequence's. */
  append(layer: number, k: Tensor, v: Tensor): { k: Tensor; v: Tensor } {
    this.#checkLayer(layer);
    const past = this.length;
    const pk = this.#k[layer];
    const pv = this.#v[layer];
    const grown = (previous: Tensor | null, step: Tensor): Tensor => {
      if (!previous) return keep(step.contiguous());
      const held = previous.narrow(2, 0, past); // an own buffer may be longer than the cached part
      const all = keep(cat([held, step], 2));
      held.dispose();
      previous.dispose();
      return all;
    };
    const fk = grown(pk, k);
    const fv = grown(pv, v);
    this.#k[layer] = fk;
    this.#v[layer] = fv;
    this.#owned[layer] = false;
    return { k: fk, v: fv };
  }

  /**
   * One layer's attention over its cached keys and values plus this step's: appends `k, v`
   * `(B, Hkv, T, D)` and returns `softmax(q kᵀ/√D + mask) v` for `q (B, H, T, D)`, as
   * {@link scaledDotProductAttention} over the whole sequence would.
   */
  attend(layer: number, q: Tensor, k: Tensor, v: Tensor, options: CachedAttentionOptions): Tensor {
    // Under noGrad (generation) the first check settles it: one native call.
    const recording = options.dropoutP > 0 || (isGradEnabled() && (q.requiresGrad || k.requiresGrad || v.requiresGrad));
    if (recording) {
      const kv = this.append(layer, k, v);
      return scaledDotProductAttention(q, kv.k, kv.v, { mask: options.mask, causal: options.causal, dropoutP: options.dropoutP });
    }
    this.#checkLayer(layer);
    const T = k.shape[2];
    const [cacheKey, cacheValue] = this.#room(layer, k, v, this.length + T);
    return new Tensor(
      native.attentionWithCache({
        query: handleOf(q),
        key: handleOf(k),
        value: handleOf(v),
        cacheKey: handleOf(cacheKey),
        cacheValue: handleOf(cacheValue),
        past: this.length,
        mask: options.mask && handleOf(options.mask),
        causal: options.causal,
        scale: 1 / Math.sqrt(q.shape[3]),
      }),
    );
  }

  /** This layer's own buffers, with room for `needed` tokens: reallocated (keeping the cached part) when they have not. */
  #room(layer: number, k: Tensor, v: Tensor, needed: number): [Tensor, Tensor] {
    const pk = this.#k[layer];
    const pv = this.#v[layer];
    const [B, Hkv, , D] = k.shape;
    if (pk && pv) {
      const [b, h, held, d] = pk.shape;
      if (b !== B || h !== Hkv || d !== D) {
        throw new RangeError(
          `KVCache: layer ${layer} holds keys of shape [${pk.shape.join(", ")}] but this step's are [${k.shape.join(", ")}]: a cache serves one batch of one model; dispose() it to start another`,
        );
      }
      if (this.#owned[layer] && held >= needed) return [pk, pv];
    }
    const size = Math.max(this.#capacity, needed, 2 * (pk?.shape[2] ?? 0));
    const grow = (old: Tensor | null, like: Tensor): Tensor => {
      const buffer = keep(empty([B, Hkv, size, like.shape[3]], { dtype: like.dtype, device: like.device }));
      if (old && this.length > 0) {
        const [to, from] = [buffer.narrow(2, 0, this.length), old.narrow(2, 0, this.length)];
        to.copy_(from);
        to.dispose();
        from.dispose();
      }
      old?.dispose();
      return buffer;
    };
    this.#k[layer] = grow(pk, k);
    this.#v[layer] = grow(pv, v);
    this.#owned[layer] = true;
    return [this.#k[layer]!, this.#v[layer]!];
  }

  #checkLayer(layer: number): void {
    if (!Number.isInteger(layer) || layer < 0 || layer >= this.#k.length) {
      throw new RangeError(`KVCache: layer: expected an integer in [0, ${this.#k.length - 1}], got ${describe(layer)}`);
    }
  }

  /** Frees every cached tensor. */
  dispose(): void {
    for (const t of [...this.#k, ...this.#v]) t?.dispose();
    this.#k.fill(null);
    this.#v.fill(null);
    this.#owned.fill(false);
    this.length = 0;
  }
}

/** Options of a model's forward. */
export interface CausalLMForwardOptions {
  /**
   * `(B, S)` with 1 for tokens and 0 for padding, S covering the cached tokens and the new ones.
   * Padded keys are masked out and positions count only real tokens (`cumsum(mask) - 1`, as
   * transformers' generation does), so left-padded rows match their unpadded forward.
   */
  attentionMask?: Tensor | null;
  /** A cache to read earlier keys and values from and append this forward's to. */
  cache?: KVCache | null;
  /**
   * Compute the logits of the last `logitsToKeep` positions only (transformers' `logits_to_keep`):
   * the result is `(B, logitsToKeep, V)`. 0, the default, keeps every position. Generation keeps 1,
   * which spares the output layer's product over the prompt.
   */
  logitsToKeep?: number;
}

/**
 * The hidden states `(B, T, E)` of the positions whose logits are asked for: the last
 * `options.logitsToKeep` of them, or all. @throws RangeError for a count that is not an integer in [0, T].
 */
export function keptPositions(hidden: Tensor, options: CausalLMForwardOptions, caller: string): Tensor {
  const keep = options.logitsToKeep ?? 0;
  const T = hidden.shape[1];
  if (!Number.isInteger(keep) || keep < 0 || keep > T) {
    throw new RangeError(`${caller}: logitsToKeep: expected an integer in [0, ${T}] (0 keeps every position), got ${describe(options.logitsToKeep)}`);
  }
  return keep === 0 || keep === T ? hidden : hidden.narrow(1, T - keep, keep);
}

/** The per-forward state handed to every layer. */
export interface ForwardContext {
  /** `(B, 1, T, S)` boolean (true = attend), or null with `causal` true for the plain causal case. */
  mask: Tensor | null;
  causal: boolean;
  /** `(B, T)` int64 positions of the new tokens. */
  positions: Tensor;
  cache: KVCache | null;
}

/**
 * Builds the context of a forward over `ids (B, T)`.
 *
 * @param maxKeys The longest key sequence the model supports (a sliding window it does not
 *   implement), or null; a longer one is refused naming `limitName`.
 */
export function forwardContext(ids: Tensor, options: CausalLMForwardOptions, maxKeys: number | null, limitName: string, caller: string): ForwardContext {
  if (!(ids instanceof Tensor)) throw new TypeError(`${caller}: ids: expected an int64 Tensor (B, T), got ${describe(ids)}`);
  if (ids.ndim !== 2 || ids.dtype !== "int64")
    throw new TypeError(`${caller}: ids: expected an int64 Tensor (B, T), got ${ids.dtype} [${ids.shape.join(", ")}]`);
  const [B, T] = ids.shape;
  const cache = options.cache ?? null;
  const past = cache?.length ?? 0;
  const S = past + T;
  if (maxKeys !== null && S > maxKeys) {
    throw new RangeError(`${caller}: a sequence of ${S} tokens is longer than ${limitName} (${maxKeys}), which this implementation does not support`);
  }
  const attentionMask = options.attentionMask ?? null;
  const device = ids.device;
  if (attentionMask === null) {
    const positions = arange(past, S, 1, { dtype: "int64", device }).unsqueeze(0).expand(B, T);
    if (past === 0) return { mask: null, causal: true, positions, cache };
    // One new token after the cache sees every key: no mask at all (the decoding fast path).
    if (T === 1) return { mask: null, causal: false, positions, cache };
    // With a cache, the queries are the last T of S positions: query i sees keys j <= past + i.
    return { mask: causalBlock(T, S, past, device).unsqueeze(0).unsqueeze(0), causal: false, positions, cache };
  }
  if (!(attentionMask instanceof Tensor) || attentionMask.ndim !== 2 || attentionMask.shape[0] !== B || attentionMask.shape[1] !== S) {
    throw new RangeError(
      `${caller}: attentionMask: expected a (B, S) = (${B}, ${S}) tensor of 0 and 1 covering the ${past} cached and ${T} new tokens, got ${attentionMask instanceof Tensor ? `[${attentionMask.shape.join(", ")}]` : describe(attentionMask)}`,
    );
  }
  const keys = attentionMask.ne(0); // (B, S) bool
  const positions = keys.to("int64").cumsum(1).sub(1).maskedFill(attentionMask.eq(0), 1).narrow(1, past, T);
  const mask = causalBlock(T, S, past, device).unsqueeze(0).mul(keys.unsqueeze(1)).unsqueeze(1); // (B, 1, T, S)
  return { mask, causal: false, positions, cache };
}

/** `(T, S)` bool: query i (at position past + i) sees key j when j <= past + i. */
function causalBlock(T: number, S: number, past: number, device: Tensor["device"]): Tensor {
  const keyIdx = arange(0, S, 1, { dtype: "int64", device }).unsqueeze(0);
  const queryIdx = arange(past, S, 1, { dtype: "int64", device }).unsqueeze(1);
  return keyIdx.le(queryIdx);
}
