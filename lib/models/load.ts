/**
 * `fromPretrained`: a transformers checkpoint folder (config.json and `model.safetensors`, or
 * shards listed by `model.safetensors.index.json`) becomes the model its `model_type` names.
 * Every header is read and every key and shape checked before any weight is read; then the
 * weights are read one tensor at a time into a model built without its random init (its
 * parameters are uninitialized memory until their bytes arrive), so loading costs no init time.
 * A CPU parameter of the file's dtype is read straight into its memory; any other (another
 * dtype, another device) through a staging tensor of at most one 16 MB block, so peak memory
 * stays about the model's size.
 */
import * as fs from "fs";
import * as path from "path";
import { Device, Dtype, checkDevice, checkDtype } from "../dtype";
import { ConfigError, FormatError, describe } from "../errors";
import { withoutInit } from "../init";
import { readIntoTensor } from "../io/read-into";
import { readSafetensorsHeader } from "../io/safetensors-read";
import { SafetensorsTensorInfo } from "../io/safetensors-format";
import { copyInto } from "../nn/module";
import { Tensor, noGrad, optionsObject } from "../tensor";
import { CausalLM } from "./causal-lm";
import { GPT2Config, LLAMA_MODEL_TYPES, LlamaConfig } from "./config";
import { GPT2LMHeadModel } from "./gpt2";
import { LlamaForCausalLM } from "./llama";
import { initCausalLMWeights } from "./init-weights";
import { checkpointFiles, readJsonFile } from "./checkpoint-files";
import { CONFIG_NAME } from "./save";

/** Options of {@link fromPretrained}. */
export interface FromPretrainedOptions {
  /** The parameters' dtype. Default float32, as transformers without `torch_dtype`. */
  dtype?: Dtype;
  /** Where the parameters live. Default "cpu". */
  device?: Device;
  /**
   * Refuse a checkpoint with missing or unexpected keys (default true). With false, unexpected
   * keys are skipped and missing parameters keep the init of a model built from the config, as
   * transformers loads; both are named in a warning (`process.emitWarning`, code
   * `TORCH_LORA_LOADING_INFO`) and in the loading info. Wrong shapes are refused either way.
   */
  strict?: boolean;
  /** Return `{ model, loadingInfo }` instead of the model alone (transformers' `output_loading_info`). */
  outputLoadingInfo?: boolean;
}

/** What a load left out: parameters the checkpoint lacked and checkpoint keys the model has no place for. */
export interface LoadingInfo {
  missingKeys: string[];
  unexpectedKeys: string[];
}

/** The `model_type`s {@link fromPretrained} builds. */
export const SUPPORTED_MODEL_TYPES: readonly string[] = ["gpt2", ...LLAMA_MODEL_TYPES];

// Buffers published checkpoints carry that the model recomputes (GPT-2's causal mask, old Llama rotary tables).
const IGNORED_KEYS = /(^|\.)attn\.(bias|masked_bias)$|(^|\.)rotary_emb\.inv_freq$/;

/** Builds a randomly initialized model of the architecture a config.json object names. */
export function modelFromConfig(json: Record<string, unknown>, options: { dtype?: Dtype; device?: Device } = {}, where = CONFIG_NAME): CausalLM {
  const type = json.model_type;
  if (type === "gpt2") return new GPT2LMHeadModel(new GPT2Config(json, where), options);
  if (typeof type === "string" && LLAMA_MODEL_TYPES.includes(type)) return new LlamaForCausalLM(new LlamaConfig(json, where), options);
  throw new ConfigError(`${where}: model_type: expected one of ${SUPPORTED_MODEL_TYPES.join(", ")}, got ${describe(type)}`);
}

interface Located {
  file: string;
  dataStart: number;
  info: SafetensorsTensorInfo;
}

/** Every tensor of the checkpoint with the file holding it. */
async function locateTensors(dir: string): Promise<Map<string, Located>> {
  const { files } = checkpointFiles(dir);
  const out = new Map<string, Located>();
  for (const file of files) {
    const header = await readSafetensorsHeader(file);
    for (const info of header.tensors) {
      if (info.dtype === null)
        throw new FormatError(`${file}: tensor ${JSON.stringify(info.name)} has dtype ${info.formatDtype}, which torch-lora cannot load`);
      if (out.has(info.name)) throw new FormatError(`${file}: tensor ${JSON.stringify(info.name)} is also in ${out.get(info.name)!.file}`);
      out.set(info.name, { file, dataStart: header.dataStart, info });
    }
  }
  return out;
}

/** The model key a checkpoint key fills, or null for a key to ignore. */
function modelKey(key: string, expected: Set<string>, model: CausalLM): string | null {
  if (IGNORED_KEYS.test(key)) return null;
  if (expected.has(key)) return key;
  // GPT-2's published checkpoints were saved from GPT2Model: their keys lack the "transformer." prefix.
  if (model.config.model_type === "gpt2" && expected.has(`transformer.${key}`)) return `transformer.${key}`;
  return key;
}

/** The model and what its load left out: {@link fromPretrained}'s answer with `outputLoadingInfo`. */
export interface LoadedModel {
  model: CausalLM;
  loadingInfo: LoadingInfo;
}

/**
 * Loads a transformers checkpoint folder: config.json picks the class from its `model_type`
 * (gpt2 → {@link GPT2LMHeadModel}; llama, mistral, qwen2 → {@link LlamaForCausalLM}), and the
 * weights come from `model.safetensors` or the shards of `model.safetensors.index.json`. GPT-2
 * checkpoints without the `transformer.` prefix and with `attn.bias` buffers load as
 * transformers loads them. The model is returned in eval mode, as transformers does.
 *
 * @throws ConfigError for a config field that is invalid or not implemented; FormatError for
 *   missing files, malformed files, wrong shapes, and (when strict) missing or unexpected keys,
 *   all named, before any weight is read.
 */
export function fromPretrained(dir: string, options: FromPretrainedOptions & { outputLoadingInfo: true }): Promise<LoadedModel>;
export function fromPretrained(dir: string, options?: FromPretrainedOptions & { outputLoadingInfo?: false }): Promise<CausalLM>;
export async function fromPretrained(dir: string, options: FromPretrainedOptions = {}): Promise<CausalLM | LoadedModel> {
  if (typeof dir !== "string" || dir === "") throw new TypeError(`fromPretrained: dir: expected a folder path, got ${describe(dir)}`);
  optionsObject(options, "fromPretrained: options");
  const dtype = options.dtype === undefined ? "float32" : checkDtype(options.dtype, "fromPretrained: options.dtype");
  const device = options.device === undefined ? "cpu" : checkDevice(options.device, "fromPretrained: options.device");
  const strict = flag(options.strict, "strict", true);
  const outputLoadingInfo = flag(options.outputLoadingInfo, "outputLoadingInfo", false);
  const configFile = path.join(dir, CONFIG_NAME);
  const json = readJsonFile(configFile);
  if (json === null || typeof json !== "object" || Array.isArray(json)) throw new FormatError(`${configFile}: expected a JSON object, got ${describe(json)}`);
  const tensors = await locateTensors(dir);
  // Built without its random init: the checkpoint's bytes overwrite every parameter it holds.
  const model = withoutInit(() =>
    modelFromConfig(
      { ...(json as Record<string, unknown>), _name_or_path: (json as Record<string, unknown>)._name_or_path || dir },
      { dtype, device },
      configFile,
    ),
  );
  const targets = model.stateDict();
  const expected = new Set(Object.keys(targets));
  const tiedHead = model.config.tie_word_embeddings ? "lm_head.weight" : null;
  const plan: [string, Located][] = [];
  const unexpected: string[] = [];
  const problems: string[] = [];
  for (const [key, located] of tensors) {
    const target = modelKey(key, expected, model);
    if (target === null || (target === tiedHead && isTiedDuplicate(tensors, model))) continue;
    if (!expected.has(target)) {
      unexpected.push(key);
      continue;
    }
    const want = targets[target].shape;
    if (want.join() !== located.info.shape.join())
      problems.push(`${key}: shape [${located.info.shape.join(", ")}] in the checkpoint, [${want.join(", ")}] in the model`);
    plan.push([target, located]);
  }
  const filled = new Set(plan.map(([k]) => k));
  if (tiedHead && (filled.has(embeddingKey(model)) || filled.has(tiedHead))) {
    filled.add(tiedHead);
    filled.add(embeddingKey(model));
  }
  const missing = [...expected].filter((k) => !filled.has(k));
  if (strict && missing.length) problems.unshift(`missing keys: ${missing.join(", ")}`);
  if (strict && unexpected.length) problems.unshift(`unexpected keys: ${unexpected.join(", ")}`);
  if (problems.length)
    throw new FormatError(
      `fromPretrained(${dir}): the checkpoint does not fit a ${model.config.model_type} model built from its config.json: ${problems.join("; ")}`,
    );
  // What the file does not fill gets the init it skipped (withoutInit left it uninitialized).
  if (missing.length) initCausalLMWeights(model, model.config, new Set(missing));
  await readInto(plan, targets);
  for (const t of Object.values(targets)) t.dispose();
  model.eval();
  const loadingInfo: LoadingInfo = { missingKeys: missing, unexpectedKeys: unexpected };
  if (missing.length || unexpected.length) {
    process.emitWarning(
      `fromPretrained(${dir}): ${[missing.length ? `missing keys (initialized from the config): ${missing.join(", ")}` : "", unexpected.length ? `unexpected keys (ignored): ${unexpected.join(", ")}` : ""].filter(Boolean).join("; ")}`,
      { code: "TORCH_LORA_LOADING_INFO" },
    );
  }
  return outputLoadingInfo ? { model, loadingInfo } : model;
}

function flag(value: unknown, name: string, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== "boolean") throw new TypeError(`fromPretrained: options.${name}: expected a boolean, got ${describe(value)}`);
  return value;
}

/** The key of the input embedding that a tied `lm_head.weight` shares. */
function embeddingKey(model: CausalLM): string {
  return model.config.model_type === "gpt2" ? "transformer.wte.weight" : "model.embed_tokens.weight";
}

/** A tied head's own copy in the file is dropped when the embedding is there too (transformers ties them after loading). */
function isTiedDuplicate(tensors: Map<string, Located>, model: CausalLM): boolean {
  const emb = embeddingKey(model);
  return tensors.has(emb) || (model.config.model_type === "gpt2" && tensors.has(emb.slice("transformer.".length)));
}

// Bytes read and converted at once: a large tensor (an embedding of 150 MB) is read in row blocks
// of about this size (16 MB), so loading never holds a second copy of it.
const BLOCK_BYTES = 16 << 20;

/**
 * Reads each planned tensor's bytes into the model's tensor: in one read when they can go there
 * as they are, else block by block through a staging tensor (converting dtype and device).
 */
async function readInto(plan: [string, Located][], targets: Record<string, Tensor>): Promise<void> {
  const handles = new Map<string, fs.promises.FileHandle>();
  // One buffer for every block (fromBytes copies out of it): no garbage for the collector to find late.
  let scratch = Buffer.alloc(0);
  try {
    for (const [key, { file, dataStart, info }] of plan) {
      let handle = handles.get(file);
      if (!handle) handles.set(file, (handle = await fs.promises.open(file, "r")));
      // Same dtype, on the CPU: the bytes go straight into the parameter, no staging copy.
      if (await readIntoTensor(handle, dataStart + info.dataOffsets[0], targets[key], info.dtype!)) continue;
      const rows = info.shape.length === 0 ? 1 : info.shape[0];
      const rowBytes = rows === 0 ? 0 : info.byteLength / rows;
      const perBlock = info.shape.length === 0 ? 1 : Math.max(1, Math.floor(BLOCK_BYTES / Math.max(rowBytes, 1)));
      for (let row = 0; row < rows; row += perBlock) {
        const n = Math.min(perBlock, rows - row);
        if (scratch.length < n * rowBytes) scratch = Buffer.allocUnsafe(Math.max(n * rowBytes, Math.min(BLOCK_BYTES, info.byteLength)));
        const bytes = scratch.subarray(0, n * rowBytes);
        const start = dataStart + info.dataOffsets[0] + row * rowBytes;
        let done = 0;
        while (done < bytes.length) {
          const { bytesRead } = await handle.read(bytes, done, bytes.length - done, start + done);
          if (bytesRead === 0) throw new FormatError(`${file}: ended while reading tensor ${JSON.stringify(info.name)} (it changed while being read?)`);
          done += bytesRead;
        }
        const shape = info.shape.length === 0 ? [] : [n, ...info.shape.slice(1)];
        const source = Tensor.fromBytes(bytes, shape, info.dtype!, "cpu");
        const target = info.shape.length === 0 || n === rows ? targets[key] : targets[key].narrow(0, row, n);
        try {
          noGrad(() => copyInto(target, source));
        } finally {
          source.dispose();
          if (target !== targets[key]) target.dispose();
        }
      }
    }
  } finally {
    for (const h of handles.values()) await h.close();
  }
}
