/**
 * `torch-lora merge --base <folder>`: merges a PEFT adapter into a transformers checkpoint folder
 * (config.json with `model.safetensors`, or with shards listed by `model.safetensors.index.json`)
 * and writes a folder of the same layout: the same shard names and index, the config and the
 * other files (tokenizer, generation config) copied. The architecture, and so which layers are
 * stored (in, out) like GPT-2's Conv1D, comes from config.json's `model_type`. Every header is
 * checked first; then one shard at a time is read, merged and written, so memory stays about
 * one shard; the output folder is switched in atomically.
 */
import * as fs from "fs";
import * as path from "path";
import { dtypeSize } from "../dtype";
import { loadSafetensors, readSafetensorsHeader, saveSafetensors } from "../io";
import { writeFileAtomic } from "../io/atomic";
import { replaceFolder } from "../io/atomic-folder";
import { SafetensorsTensorInfo } from "../io/safetensors-format";
import { locateAdapter, readAdapterConfig } from "../lora/peft-format";
import { describeAdapterModules, mergeWeights, planWeightMerge } from "../lora/peft-merge";
import { WeightLayout } from "../lora/weight-layout";
import { checkpointFiles, readJsonFile } from "../models/checkpoint-files";
import { WEIGHTS_INDEX_NAME } from "../models/save";
import { UsageError } from "./errors";
import { createProgress } from "./progress";
import type { Dtype } from "../dtype";

/** What the folder merge needs from the command's options. */
export interface FolderMergeOptions {
  base: string;
  adapter: string;
  out: string;
  dtype?: Dtype;
  safe?: boolean;
  adapterName?: string;
}

function checkOutFolder(opts: FolderMergeOptions): void {
  const out = opts.out;
  if (typeof out !== "string" || out.length === 0) throw new UsageError("--out: give the folder to write the merged checkpoint into");
  if (fs.existsSync(out) && !fs.statSync(out).isDirectory())
    throw new UsageError(`--out ${out}: is a file; with a checkpoint folder as --base, --out is the folder to write`);
  const real = (p: string) => (fs.existsSync(p) ? fs.realpathSync(p) : path.resolve(p));
  if (real(out) === real(opts.base)) throw new UsageError(`--out ${out} is the base folder --base ${opts.base}: write the merged checkpoint elsewhere`);
}

/** Merges into a checkpoint folder; `layoutOf(dir)` gives the layer layout from the folder's config.json. */
export async function runFolderMerge(
  opts: FolderMergeOptions,
  layoutOf: (configBeside: string) => Promise<WeightLayout>,
  out: NodeJS.WriteStream = process.stdout,
): Promise<void> {
  checkOutFolder(opts);
  const loc = locateAdapter(opts.adapter, opts.adapterName);
  const { resolved } = readAdapterConfig(loc.configPath);
  const adapterHeader = await readSafetensorsHeader(loc.weightsPath);
  const modules = describeAdapterModules(resolved, adapterHeader.tensors, loc.weightsPath);
  if (modules.length === 0) throw new UsageError(`${loc.weightsPath}: the adapter holds no LoRA factors`);
  const { files, index } = checkpointFiles(opts.base);
  const headers = await Promise.all(files.map((f) => readSafetensorsHeader(f)));
  const all: SafetensorsTensorInfo[] = headers.flatMap((h) => h.tensors);
  const plans = planWeightMerge(all, modules, await layoutOf(path.join(opts.base, path.basename(files[0]))), opts.base);
  const shardOf = new Map<string, number>();
  headers.forEach((h, i) => h.tensors.forEach((t) => shardOf.set(t.name, i)));

  const adapter = await loadSafetensors(loc.weightsPath);
  const progress = createProgress(plans.length, "merging");
  let done = 0;
  let totalSize = 0;
  try {
    await replaceFolder(opts.out, async (tmp) => {
      for (let i = 0; i < files.length; i++) {
        const base = await loadSafetensors(files[i]);
        const mine = plans.filter((p) => shardOf.get(p.baseKey) === i);
        const merged = mergeWeights(base, adapter, mine, {
          dtype: opts.dtype,
          safe: opts.safe ?? false,
          onMerged: (_d, _t, p) => progress.update(++done, p.module.path),
        });
        await saveSafetensors(path.join(tmp, path.basename(files[i])), merged, { ...(headers[i].metadata ?? {}), format: "pt" });
        totalSize += Object.values(merged).reduce((n, t) => n + t.numel * dtypeSize(t.dtype), 0);
        for (const t of new Set([...Object.values(base), ...Object.values(merged)])) t.dispose();
      }
      // Everything else of the checkpoint (config, tokenizer, generation config) comes along.
      const weights = new Set(files.map((f) => path.basename(f)));
      for (const name of fs.readdirSync(opts.base)) {
        const from = path.join(opts.base, name);
        if (weights.has(name) || name === WEIGHTS_INDEX_NAME || !fs.statSync(from).isFile()) continue;
        await writeFileAtomic(path.join(tmp, name), fs.readFileSync(from));
      }
      if (index) {
        const json = readJsonFile(index) as Record<string, unknown>;
        const metadata = { ...((json.metadata as Record<string, unknown> | undefined) ?? {}), total_size: totalSize };
        await writeFileAtomic(path.join(tmp, WEIGHTS_INDEX_NAME), JSON.stringify({ ...json, metadata }, null, 2) + "\n");
      }
    });
  } finally {
    progress.stop();
  }
  const linear = plans.filter((p) => p.module.kind === "linear").length;
  const lines = [
    `merged ${plans.length} module${plans.length === 1 ? "" : "s"} (${linear} linear, ${plans.length - linear} embedding) from ${loc.dir}`,
    ...plans.map((p) => `  ${p.baseKey}  r=${p.module.r} alpha=${p.module.alpha} scale=${p.module.scale}${p.transposed ? " (transposed)" : ""}`),
    `wrote ${files.length} weight file${files.length === 1 ? "" : "s"}${index ? " and the index" : ""} to ${opts.out}${opts.dtype ? ` as ${opts.dtype}` : ""}`,
  ];
  out.write(lines.join("\n") + "\n");
}
