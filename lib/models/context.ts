/**
 * What every layer of a causal language model needs for one forward: which keys each query may
 * see (causal, padding), the token positions, and the key/value cache of earlier steps.
 * Built once per forward, so the layers do no mask arithmetic of their own.
 */
import { describe } from "../errors";
import { keep } from "../scope";
import { Tensor, arange, cat } from "../tensor";

/** Cached keys and values of every layer, `(B, Hkv, S, D)`, growing by one forward at a time. */
export class KVCache {
  #k: (Tensor | null)[];
  #v: (Tensor | null)[];
  /** Tokens already cached (S). */
  length = 0;

  constructor(numLayers: number) {
    this.#k = new Array<Tensor | null>(numLayers).fill(null);
    this.#v = new Array<Tensor | null>(numLayers).fill(null);
  }

  /** Appends this step's keys and values for `layer`; returns the whole sequence's. */
  append(layer: number, k: Tensor, v: Tensor): { k: Tensor; v: Tensor } {
    const pk = this.#k[layer];
    const pv = this.#v[layer];
    const fk = keep(pk ? cat([pk, k], 2) : k.contiguous());
    const fv = keep(pv ? cat([pv, v], 2) : v.contiguous());
    pk?.dispose();
    pv?.dispose();
    this.#k[layer] = fk;
    this.#v[layer] = fv;
    return { k: fk, v: fv };
  }

  /** Frees every cached tensor. */
  dispose(): void {
    for (const t of [...this.#k, ...this.#v]) t?.dispose();
    this.#k.fill(null);
    this.#v.fill(null);
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
