/**
 * Which samples each rank reads, as PyTorch's DistributedSampler picks them: the indices
 * (shuffled per epoch with seed + epoch, by the same libtorch randperm) are padded by repeating
 * from the start, or truncated with `dropLast`, to a multiple of the world size, and rank r takes
 * every worldSize-th index starting at r. Every rank gets the same number of samples, so every
 * rank runs the same number of steps (a rank with one step more would wait forever for the
 * others' all-reduce).
 */
import { native } from "../binding";
import { ConfigError, describe } from "../errors";
import { Tensor, optionsObject } from "../tensor";
import { getRank, getWorldSize } from "./process-group";
import { integerSetting } from "./init-method";

/** Options of {@link DistributedSampler}. */
export interface DistributedSamplerOptions {
  /** Number of ranks (default: the default group's size, 1 without one). */
  numReplicas?: number;
  /** This rank (default: the default group's rank). */
  rank?: number;
  /** Shuffle the indices every epoch (default true, as PyTorch). */
  shuffle?: boolean;
  /** Base seed of the shuffle; must be the same on every rank (default 0). */
  seed?: number;
  /** Drop the tail that does not divide evenly instead of padding (default false). */
  dropLast?: boolean;
}

/** Splits the indices 0..datasetSize-1 across ranks (see the file comment). */
export class DistributedSampler {
  readonly datasetSize: number;
  readonly numReplicas: number;
  readonly rank: number;
  readonly shuffle: boolean;
  readonly seed: number;
  readonly dropLast: boolean;
  /** Samples per rank per epoch. */
  readonly numSamples: number;
  /** numSamples × numReplicas: the padded (or truncated) length of the epoch. */
  readonly totalSize: number;
  #epoch = 0;

  constructor(datasetSize: number, options?: DistributedSamplerOptions) {
    const opts = optionsObject(options);
    this.datasetSize = integerSetting(datasetSize, "datasetSize", 0);
    this.numReplicas = integerSetting(opts.numReplicas ?? getWorldSize(), "numReplicas", 1);
    this.rank = integerSetting(opts.rank ?? getRank(), "rank", 0);
    if (this.rank >= this.numReplicas) throw new ConfigError(`rank: expected an integer in [0, ${this.numReplicas - 1}], got ${this.rank}`);
    for (const flag of ["shuffle", "dropLast"] as const) {
      if (opts[flag] !== undefined && typeof opts[flag] !== "boolean") throw new TypeError(`${flag}: expected a boolean, got ${describe(opts[flag])}`);
    }
    this.shuffle = opts.shuffle ?? true;
    this.dropLast = opts.dropLast ?? false;
    this.seed = integerSetting(opts.seed ?? 0, "seed", 0);
    this.numSamples =
      this.dropLast && this.datasetSize % this.numReplicas !== 0
        ? Math.ceil((this.datasetSize - this.numReplicas) / this.numReplicas)
        : Math.ceil(this.datasetSize / this.numReplicas);
    this.totalSize = this.numSamples * this.numReplicas;
  }

  /** The epoch whose shuffle {@link indices} returns; call it at the start of every epoch, on every rank. */
  setEpoch(epoch: number): void {
    this.#epoch = integerSetting(epoch, "epoch", 0);
  }

  /** The current epoch. */
  get epoch(): number {
    return this.#epoch;
  }

  /** This rank's indices for the current epoch. */
  indices(): number[] {
    let all: number[];
    if (this.shuffle) {
      const perm = new Tensor(native.randpermSeeded(this.datasetSize, this.seed + this.#epoch));
      all = Array.from(perm.toArray() as BigInt64Array, Number);
    } else {
      all = Array.from({ length: this.datasetSize }, (_, i) => i);
    }
    if (this.dropLast) {
      all = all.slice(0, this.totalSize);
    } else {
      const base = all.slice();
      for (let i = 0; all.length < this.totalSize; i++) all.push(base[i % base.length]);
    }
    return all.filter((_, i) => i % this.numReplicas === this.rank);
  }

  /** Iterates over {@link indices}. */
  [Symbol.iterator](): Iterator<number> {
    return this.indices()[Symbol.iterator]();
  }

  /** Samples per rank per epoch. */
  get length(): number {
    return this.numSamples;
  }
}
