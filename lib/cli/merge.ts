/**
 * `torch-lora merge`: folds a PEFT adapter into a base safetensors file from the tensor names
 * alone, writing the merged weights atomically. Everything that can make it fail is checked
 * first (the output path, then both headers), so a failed merge writes nothing.
 */
import * as fs from "fs";
import * as path from "path";
import { Dtype } from "../dtype";
import { loadSafetensors, readSafetensorsHeader, saveSafetensors } from "../io";
import { readTextFile } from "../io/regular-file";
import { locateAdapter, readAdapterConfig } from "../lora/peft-format";
import { describeAdapterModules, mergeWeights, planWeightMerge } from "../lora/peft-merge";
import { KNOWN_MODEL_TYPES, WeightLayout, layoutFromModelType, modelTypeOf, patternLayout, uniformLayout, unknownLayout } from "../lora/weight-layout";
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
  /** A regex naming the modules stored (in, out); false (`--no-conv1d`) when none is. */
  conv1d?: string | false;
  /** Allow `--out` to replace the base file. */
  force?: boolean;
}

/** Whether two paths name one file (the same inode, through links too). */
function sameFile(a: string, b: string): boolean {
  try {
    const sa = fs.statSync(a);
    const sb = fs.statSync(b);
    return sa.dev === sb.dev && sa.ino === sb.ino;
  } catch {
    return path.resolve(a) === path.resolve(b);
  }
}

/** Refuses an output path that cannot be written, or that would overwrite an input, before any work. */
function checkOutput(opts: MergeCommandOptions, adapterWeights: string): void {
  const out = opts.out;
  if (typeof out !== "string" || out.length === 0)
    throw new UsageError("--out: the path is empty, so its folder does not exist; give the .safetensors file to write");
  const folder = path.dirname(path.resolve(out));
  if (!fs.existsSync(folder)) throw new UsageError(`--out ${out}: the folder ${folder} does not exist; create it first`);
  if (!fs.statSync(folder).isDirectory()) throw new UsageError(`--out ${out}: ${folder} is not a folder`);
  if (fs.existsSync(out) && fs.statSync(out).isDirectory()) throw new UsageError(`--out ${out}: is a folder; give the path of the .safetensors file to write`);
  if (!opts.force && fs.existsSync(out)) {
    if (sameFile(out, opts.base)) {
      throw new UsageError(
        `--out ${out} is the base file --base ${opts.base}: the merge would overwrite the base model; write elsewhere, or pass --force to replace it`,
      );
    }
    if (sameFile(out, adapterWeights)) {
      throw new UsageError(
        `--out ${out} is the adapter's weights file ${adapterWeights}: the merge would overwrite the adapter; write elsewhere, or pass --force to replace it`,
      );
    }
  }
}

/** What is known of how the base stores adapted weights: the flags first, else the config.json beside the base file. */
async function weightLayout(opts: MergeCommandOptions): Promise<WeightLayout> {
  if (opts.conv1d === false) return uniformLayout(false, "--no-conv1d");
  if (typeof opts.conv1d === "string") return patternLayout(opts.conv1d, `--conv1d ${opts.conv1d}`);
  const configPath = path.join(path.dirname(path.resolve(opts.base)), "config.json");
  if (!fs.existsSync(configPath)) return unknownLayout("no config.json lies beside the base file, and neither --conv1d nor --no-conv1d was given");
  const modelType = modelTypeOf(await readTextFile(configPath), configPath);
  if (modelType === null) return unknownLayout(`${configPath} has no model_type`);
  return (
    layoutFromModelType(modelType, `${configPath} (model_type ${JSON.stringify(modelType)})`) ??
    unknownLayout(`the model_type ${JSON.stringify(modelType)} of ${configPath} is not one torch-lora knows the layers of (${KNOWN_MODEL_TYPES.join(", ")})`)
  );
}

/** Runs the merge; prints progress to stderr and a summary to stdout. */
export async function runMerge(opts: MergeCommandOptions, out: NodeJS.WriteStream = process.stdout): Promise<void> {
  const dtype = opts.dtype === undefined ? undefined : DTYPE_NAMES[opts.dtype];
  if (opts.dtype !== undefined && dtype === undefined) throw new UsageError(`--dtype: expected f32, f16 or bf16, got ${JSON.stringify(opts.dtype)}`);
  if (typeof opts.base === "string" && fs.existsSync(opts.base) && fs.statSync(opts.base).isDirectory()) {
    const { runFolderMerge } = await import("./merge-folder");
    return runFolderMerge({ ...opts, dtype }, (weightsFile) => weightLayout({ ...opts, base: weightsFile }), out);
  }
  const loc = locateAdapter(opts.adapter, opts.adapterName);
  checkOutput(opts, loc.weightsPath);
  const { resolved } = readAdapterConfig(loc.configPath);
  // Everything is checked from the two headers before any tensor data is read.
  const adapterHeader = await readSafetensorsHeader(loc.weightsPath);
  const modules = describeAdapterModules(resolved, adapterHeader.tensors, loc.weightsPath);
  if (modules.length === 0) throw new UsageError(`${loc.weightsPath}: the adapter holds no LoRA factors`);
  const baseHeader = await readSafetensorsHeader(opts.base);
  const plans = planWeightMerge(baseHeader.tensors, modules, await weightLayout(opts), opts.base);

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
