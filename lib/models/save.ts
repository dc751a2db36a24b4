/**
 * Writing a model in transformers' layout: config.json beside `model.safetensors`, or beside
 * shards and `model.safetensors.index.json` (`{ metadata: { total_size }, weight_map }`) when the
 * weights exceed the shard size. The folder is replaced atomically.
 */
import * as fs from "fs";
import * as path from "path";
import { dtypeSize } from "../dtype";
import { describe } from "../errors";
import { writeFileAtomic } from "../io/atomic";
import { replaceFolder } from "../io/atomic-folder";
import { saveSafetensors } from "../io/safetensors-write";
import { Tensor, optionsObject } from "../tensor";

/** Options of `savePretrained`. */
export interface SavePretrainedOptions {
  /** Bytes per shard at most (a single larger tensor gets a shard of its own). Default 5 GB, as transformers. */
  maxShardSize?: number;
}

/** transformers' file names. */
export const CONFIG_NAME = "config.json";
export const WEIGHTS_NAME = "model.safetensors";
export const WEIGHTS_INDEX_NAME = "model.safetensors.index.json";

const STALE_SHARD = /^model-\d+-of-\d+\.safetensors$/;

const bytesOf = (t: Tensor): number => t.numel * dtypeSize(t.dtype);

/** Groups the tensors, in order, into shards of at most `max` bytes. */
export function planShards(entries: [string, Tensor][], max: number): [string, Tensor][][] {
  const shards: [string, Tensor][][] = [];
  let current: [string, Tensor][] = [];
  let size = 0;
  for (const e of entries) {
    const n = bytesOf(e[1]);
    if (current.length > 0 && size + n > max) {
      shards.push(current);
      current = [];
      size = 0;
    }
    current.push(e);
    size += n;
  }
  if (current.length > 0) shards.push(current);
  return shards;
}

/** Writes `config` and `state` (less the keys in `skip`) into `dir`. */
export async function savePretrained(
  dir: string,
  config: Record<string, unknown>,
  state: Record<string, Tensor>,
  skip: string[],
  options: SavePretrainedOptions,
): Promise<void> {
  if (typeof dir !== "string" || dir === "") throw new TypeError(`savePretrained: dir: expected a folder path, got ${describe(dir)}`);
  optionsObject(options, "savePretrained: options");
  const max = options.maxShardSize ?? 5e9;
  if (typeof max !== "number" || !(max >= 1))
    throw new RangeError(`savePretrained: maxShardSize: expected a number of bytes >= 1, got ${describe(options.maxShardSize)}`);
  const entries = Object.entries(state).filter(([k]) => !skip.includes(k));
  const shards = planShards(entries, max);
  const metadata = { format: "pt" };
  const written = new Set<string>([CONFIG_NAME]);
  await replaceFolder(dir, async (tmp) => {
    await writeFileAtomic(path.join(tmp, CONFIG_NAME), JSON.stringify(config, null, 2) + "\n");
    if (shards.length <= 1) {
      await saveSafetensors(path.join(tmp, WEIGHTS_NAME), Object.fromEntries(entries), metadata);
      written.add(WEIGHTS_NAME);
      return;
    }
    const weightMap: Record<string, string> = {};
    const width = Math.max(5, String(shards.length).length);
    const name = (i: number) => `model-${String(i + 1).padStart(width, "0")}-of-${String(shards.length).padStart(width, "0")}.safetensors`;
    for (let i = 0; i < shards.length; i++) {
      await saveSafetensors(path.join(tmp, name(i)), Object.fromEntries(shards[i]), metadata);
      for (const [k] of shards[i]) weightMap[k] = name(i);
      written.add(name(i));
    }
    const totalSize = entries.reduce((n, [, t]) => n + bytesOf(t), 0);
    await writeFileAtomic(path.join(tmp, WEIGHTS_INDEX_NAME), JSON.stringify({ metadata: { total_size: totalSize }, weight_map: weightMap }, null, 2) + "\n");
    written.add(WEIGHTS_INDEX_NAME);
  });
  // The folder replacement carries over the old folder's other files: weights of an earlier save
  // in the other layout (a model.safetensors that would shadow new shards, or stale shards) go.
  for (const f of fs.readdirSync(dir)) {
    if (!written.has(f) && (f === WEIGHTS_NAME || f === WEIGHTS_INDEX_NAME || STALE_SHARD.test(f))) fs.rmSync(path.join(dir, f), { force: true });
  }
}
