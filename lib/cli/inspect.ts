/**
 * `torch-lora inspect`: what a safetensors file holds (name, dtype, shape, bytes), or what an
 * adapter directory holds (its config and, per module, kind, rank, alpha and scale). Reads
 * headers only, never tensor data.
 */
import * as fs from "fs";
import { readSafetensorsHeader } from "../io";
import { locateAdapter, readAdapterConfig } from "../lora/peft-format";
import { describeAdapterModules } from "../lora/peft-merge";

/** Options of the inspect command. */
export interface InspectCommandOptions {
  json?: boolean;
  adapterName?: string;
}

/** Left-aligned columns separated by two spaces. */
export function formatTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => c.padEnd(widths[i]))
      .join("  ")
      .trimEnd();
  return [line(header), ...rows.map(line)].join("\n");
}

const shape = (s: number[]): string => `[${s.join(", ")}]`;

async function inspectFile(file: string, opts: InspectCommandOptions): Promise<string> {
  const header = await readSafetensorsHeader(file);
  const tensors = header.tensors.map((t) => ({ name: t.name, dtype: t.formatDtype, shape: t.shape, bytes: t.byteLength }));
  if (opts.json) return JSON.stringify({ file, metadata: header.metadata, tensors }, null, 2);
  const total = tensors.reduce((n, t) => n + t.bytes, 0);
  return [
    `${file}: ${tensors.length} tensor${tensors.length === 1 ? "" : "s"}, ${total} bytes of data`,
    ...(header.metadata ? [`metadata: ${JSON.stringify(header.metadata)}`] : []),
    formatTable(
      ["name", "dtype", "shape", "bytes"],
      tensors.map((t) => [t.name, t.dtype, shape(t.shape), String(t.bytes)]),
    ),
  ].join("\n");
}

async function inspectAdapter(dir: string, opts: InspectCommandOptions): Promise<string> {
  const loc = locateAdapter(dir, opts.adapterName);
  const { resolved, ignoredFields } = readAdapterConfig(loc.configPath);
  const header = await readSafetensorsHeader(loc.weightsPath);
  const modules = describeAdapterModules(resolved, header.tensors, loc.weightsPath);
  const config = {
    peft_type: "LORA",
    r: resolved.r,
    lora_alpha: resolved.loraAlpha,
    lora_dropout: resolved.loraDropout,
    use_rslora: resolved.useRslora,
    fan_in_fan_out: resolved.fanInFanOut,
    init_lora_weights: resolved.initLoraWeights,
    target_modules: resolved.targetModules,
    exclude_modules: resolved.excludeModules,
    rank_pattern: resolved.rankPattern,
    alpha_pattern: resolved.alphaPattern,
  };
  const rows = modules.map((m) => ({ module: m.path, kind: m.kind, r: m.r, alpha: m.alpha, scale: m.scale, A: m.shapeA, B: m.shapeB, dtype: m.dtype }));
  if (opts.json) return JSON.stringify({ adapter: loc.dir, config, ignoredFields, modules: rows }, null, 2);
  return [
    `adapter ${loc.dir}: ${modules.length} module${modules.length === 1 ? "" : "s"}`,
    ...Object.entries(config).map(([k, v]) => `  ${k}: ${JSON.stringify(v)}`),
    ...(ignoredFields.length ? [`  ignored fields (unknown to this version): ${ignoredFields.join(", ")}`] : []),
    formatTable(
      ["module", "kind", "r", "alpha", "scale", "A", "B", "dtype"],
      rows.map((m) => [m.module, m.kind, String(m.r), String(m.alpha), String(m.scale), shape(m.A), shape(m.B), String(m.dtype)]),
    ),
  ].join("\n");
}

/** Prints what `target` (a .safetensors file or an adapter directory) holds. */
export async function runInspect(target: string, opts: InspectCommandOptions, out: NodeJS.WriteStream = process.stdout): Promise<void> {
  const isDir = fs.existsSync(target) && fs.statSync(target).isDirectory();
  const text = isDir ? await inspectAdapter(target, opts) : await inspectFile(target, opts);
  out.write(text + "\n");
}
