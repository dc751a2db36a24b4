/**
 * `torch-lora merge`: folds a PEFT adapter into a base safetensors file from the tensor names
 * alone, writing the merged weights atomically.
 */
import { Dtype } from "../dtype";
import { loadSafetensors, readSafetensorsHeader, saveSafetensors } from "../io";
import { locateAdapter, readAdapterConfig } from "../lora/peft-format";
import { describeAdapterModules, mergeWeights, planWeightMerge } from "../lora/peft-merge";
import { UsageError } from "./errors";
import { createProgress } from "./progress";

/** The short dtype names the command accepts, with the library's names. */
export const DTYPE_NAMES: Record<string, Dtype> = {
  f32: "float32",
  f16: "float16",
  bf16: "bfloat16",
  float32: "float32",
  float16: "float16",
  bfloat16: "bfloat16",
};

/** Options of the merge command, as commander parses them. */
export interface MergeCommandOptions {
  base: string;
  adapter: string;
  out: string;
  dtype?: string;
  safe?: boolean;
  adapterName?: string;
}

/** Runs the merge; prints progress to stderr and a summary to stdout. */
export async function runMerge(opts: MergeCommandOptions, out: NodeJS.WriteStream = process.stdout): Promise<void> {
  const dtype = opts.dtype === undefined ? undefined : DTYPE_NAMES[opts.dtype];
  if (opts.dtype !== undefined && dtype === undefined) throw new UsageError(`--dtype: expected f32, f16 or bf16, got ${JSON.stringify(opts.dtype)}`);
  const loc = locateAdapter(opts.adapter, opts.adapterName);
  const { resolved } = readAdapterConfig(loc.configPath);
  // Everything is checked from the two headers before any tensor data is read.
  const adapterHeader = await readSafetensorsHeader(loc.weightsPath);
  const modules = describeAdapterModules(resolved, adapterHeader.tensors, loc.weightsPath);
  if (modules.length === 0) throw new UsageError(`${loc.weightsPath}: the adapter holds no LoRA factors`);
  const baseHeader = await readSafetensorsHeader(opts.base);
  const plans = planWeightMerge(baseHeader.tensors, modules, resolved.fanInFanOut, opts.base);

  const base = await loadSafetensors(opts.base);
  const adapter = await loadSafetensors(loc.weightsPath);
  const progress = createProgress(plans.length, "merging");
  let merged: ReturnType<typeof mergeWeights>;
  try {
    merged = mergeWeights(base, adapter, plans, { dtype, safe: opts.safe ?? false, onMerged: (done, _total, p) => progress.update(done, p.module.path) });
  } finally {
    progress.stop();
  }
  await saveSafetensors(opts.out, merged, { ...(baseHeader.metadata ?? {}), format: "pt" });

  const linear = plans.filter((p) => p.module.kind === "linear").length;
  const lines = [
    `merged ${plans.length} module${plans.length === 1 ? "" : "s"} (${linear} linear, ${plans.length - linear} embedding) from ${loc.dir}`,
    ...plans.map((p) => `  ${p.baseKey}  r=${p.module.r} alpha=${p.module.alpha} scale=${p.module.scale}${p.transposed ? " (transposed)" : ""}`),
    `wrote ${Object.keys(merged).length} tensors to ${opts.out}${dtype ? ` as ${dtype}` : ""}`,
  ];
  out.write(lines.join("\n") + "\n");
}
