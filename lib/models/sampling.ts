/**
 * Choosing the next token from a step's logits, as transformers' logits processors do, in their
 * order: temperature, then top-k, then top-p; greedy takes the argmax.
 */
import { Tensor } from "../tensor";

/** How the next token is chosen. */
export interface SamplingOptions {
  /** Sample (true) or take the argmax (false). Default: true when `temperature` > 0, `topK` or `topP` is given, else false. */
  doSample?: boolean;
  /** Divides the logits before sampling; 0 means greedy. Default 1. */
  temperature?: number;
  /** Keeps the k most likely tokens (0: all). */
  topK?: number;
  /** Keeps the smallest set of most likely tokens whose probability reaches p (1: all). */
  topP?: number;
}

/** The resolved choice: greedy, or sampling with its parameters. */
export interface Sampler {
  greedy: boolean;
  temperature: number;
  topK: number;
  topP: number;
}

/** Validates sampling options. @throws RangeError naming the bad option. */
export function resolveSampler(o: SamplingOptions, caller: string): Sampler {
  const temperature = o.temperature ?? 1;
  if (typeof temperature !== "number" || !(temperature >= 0) || !Number.isFinite(temperature))
    throw new RangeError(`${caller}: temperature: expected a finite number >= 0, got ${String(o.temperature)}`);
  const topK = o.topK ?? 0;
  if (!Number.isInteger(topK) || topK < 0) throw new RangeError(`${caller}: topK: expected an integer >= 0, got ${String(o.topK)}`);
  const topP = o.topP ?? 1;
  if (typeof topP !== "number" || !(topP > 0 && topP <= 1)) throw new RangeError(`${caller}: topP: expected a number in (0, 1], got ${String(o.topP)}`);
  if (o.doSample !== undefined && typeof o.doSample !== "boolean") throw new TypeError(`${caller}: doSample: expected a boolean, got ${String(o.doSample)}`);
  const wantsSampling = o.doSample ?? ((o.temperature !== undefined && temperature > 0) || o.topK !== undefined || o.topP !== undefined);
  return { greedy: !wantsSampling || temperature === 0, temperature, topK, topP };
}

/** The next token of each row of `logits (B, V)`, as an int64 `(B,)` tensor. */
export function nextTokens(logits: Tensor, s: Sampler): Tensor {
  if (s.greedy) return logits.argmax(-1);
  let l = logits.to("float32").div(s.temperature);
  const V = l.shape[1];
  if (s.topK > 0 && s.topK < V) {
    const kth = l.topk(s.topK, { dim: -1 }).values.narrow(-1, s.topK - 1, 1);
    l = l.maskedFill(l.lt(kth), -Infinity);
  }
  if (s.topP < 1) {
    // Ascending sort: the tokens removed are a prefix whose cumulative probability is <= 1 - p;
    // the most likely token always stays. Every token below the first kept value goes.
    const sorted = l.sort({ dim: -1 }).values;
    const removed = sorted
      .softmax(-1)
      .cumsum(-1)
      .le(1 - s.topP)
      .to("int64")
      .sum(-1, true)
      .clamp(null, V - 1);
    l = l.maskedFill(l.lt(sorted.gather(-1, removed)), -Infinity);
  }
  return l.softmax(-1).multinomial(1).squeeze(-1);
}
