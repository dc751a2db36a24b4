/**
 * Adapters on disk in Hugging Face PEFT's layout, so they move between this library and Python
 * PEFT in both directions: a directory holding `adapter_model.safetensors` (keys
 * `base_model.model.<module path>.lora_A.weight`, `.lora_B.weight`, `.lora_embedding_A`,
 * `.lora_embedding_B`, adapter name stripped) and `adapter_config.json` (PEFT's snake_case
 * LoraConfig). An adapter not named "default" lives in a subfolder named after it.
 */
import * as fs from "fs";
import * as path from "path";
import { isFloatingDtype } from "../dtype";
import { ConfigError, FormatError, describe } from "../errors";
import { loadSafetensors, loadSafetensorsSync, saveSafetensors, saveSafetensorsSync, writeFileAtomic, writeFileAtomicSync } from "../io";
import { findFolderOrBackup, replaceFolder, replaceFolderSync } from "../io/atomic-folder";
import { readTextFile, readTextFileSync } from "../io/regular-file";
import { TwinBody, runAsync, runSync, step } from "../sync-or-async";
import { Conv1D, Embedding } from "../nn/layers";
import { Module, copyInto } from "../nn/module";
import { splitModulePath } from "../nn/module-paths";
import { Tensor, noGrad, optionsObject } from "../tensor";
import { LoraConfig, ResolvedLoraConfig, layerSettings } from "./config";
import { LoraEmbedding, LoraLayer, LoraLinear } from "./layers";
import { AdapterOptions, LoraModel, injectAdapter } from "./model";
import { peftModelFields } from "./default-targets";
import { selectTargets } from "./targets";
import { checkAdapterName, requireAdapter } from "./adapter-names";
import { hotswapAdapter, savedFactors } from "./hotswap";
import { convertToPlainLora } from "./weight-conversion";
import { BASE_LAYER_KEY, MAGNITUDE_KEY, liveLoraKeyPattern, savedFactorKeys } from "./peft-keys";
import {
  ADAPTER_CONFIG_NAME,
  ADAPTER_WEIGHTS_NAME,
  PEFT_KEY_PREFIX,
  PeftConfigReading,
  formatConfigJson,
  parseConfigText,
  peftFieldNaming,
  resolvePeftConfig,
  toPeftConfigJson,
} from "./peft-config";

// PEFT's safetensors writer stores this; transformers' loaders check it.
const WEIGHTS_METADATA = { format: "pt" };

/** Options of {@link saveAdapter}. */
export interface SaveAdapterOptions {
  /** The adapter(s) to save (default: every adapter, as PEFT's `save_pretrained` does). */
  adapterName?: string | string[];
  /**
   * For a PiSSA or OLoRA adapter: the directory where the same adapter was saved right after
   * injection, before training. The adapter is then saved as a plain LoRA adapter (rank 2r) for the
   * ORIGINAL base weights, as PEFT's `path_initial_model_for_weight_conversion` does.
   */
  pathInitialModelForWeightConversion?: string;
}

/** Options of {@link loadAdapter}. */
export interface LoadAdapterOptions {
  /** Name the loaded adapter gets (default "default"); also picks the subfolder `<dir>/<name>` when it holds an adapter. */
  adapterName?: string;
  /**
   * false (default, as in PEFT's `from_pretrained`): the adapter's factors are frozen and the
   * model is put in eval mode. true: the adapter trains like a freshly injected one.
   */
  isTrainable?: boolean;
  /**
   * true (default, as PEFT's `autocast_adapter_dtype`): on a float16/bfloat16 model the factors
   * are kept in float32, as the file usually stores them. false: they take the model's dtype.
   */
  autocastAdapterDtype?: boolean;
  /**
   * Hot swap: the name of an adapter the model already holds, whose weights the loaded ones
   * replace in place, without re-injection (see {@link hotswapAdapter}). `adapterName` and
   * `isTrainable` do not apply; `loadAdapterAsync` reads a hot-swapped adapter's files synchronously.
   */
  hotswap?: string;
}

/** Where an adapter's two files are. */
export interface AdapterLocation {
  dir: string;
  configPath: string;
  weightsPath: string;
}

interface SavePlan {
  dir: string;
  tensors: Map<string, Tensor>;
  configText: string;
}

function adapterNamesToSave(model: LoraModel, options: SaveAdapterOptions): string[] {
  optionsObject(options);
  const requested = options.adapterName ?? model.adapterNames;
  const names = typeof requested === "string" ? [requested] : requested;
  if (!Array.isArray(names) || names.length === 0) {
    throw new TypeError(`adapterName: expected an adapter name or a non-empty list of names, got ${describe(options.adapterName)}`);
  }
  for (const n of names) {
    requireAdapter(n, model.adapterNames);
  }
  return names;
}

function planSave(model: LoraModel, dir: string, options: SaveAdapterOptions): SavePlan[] {
  if (!(model instanceof LoraModel)) throw new TypeError(`model: expected a LoraModel, got ${describe(model)}`);
  if (typeof dir !== "string" || dir.length === 0) throw new TypeError(`dir: expected a directory path, got ${describe(dir)}`);
  if (fs.existsSync(dir) && !fs.statSync(dir).isDirectory()) throw new TypeError(`dir: ${dir} exists and is not a directory`);
  const configs = model.peftConfig;
  return adapterNamesToSave(model, options).map((name) => {
    const tensors = new Map<string, Tensor>();
    let conv1d = false;
    for (const [p, layer] of model.loraLayers()) {
      if (!layer.adapterNames.includes(name)) continue;
      const [A, B] = savedFactors(layer, name);
      const [a, b] = savedFactorKeys(layer instanceof LoraEmbedding ? "embedding" : "linear");
      tensors.set(`${PEFT_KEY_PREFIX}${p}.${a}`, A.detach());
      tensors.set(`${PEFT_KEY_PREFIX}${p}.${b}`, B.detach());
      // PEFT saves DoRA's magnitude with the adapter name and `.weight` stripped.
      const magnitude = layer.magnitude(name);
      if (magnitude) tensors.set(`${PEFT_KEY_PREFIX}${p}.${MAGNITUDE_KEY}`, magnitude.detach());
      if (layer instanceof LoraLinear && layer.base_layer instanceof Conv1D) conv1d = true;
    }
    // PEFT records fan_in_fan_out as the layers store their weight (it sets it for Conv1D), which
    // is what a merge from the files alone needs to know.
    const json = toPeftConfigJson(configs[name], conv1d);
    Object.assign(json, peftModelFields(model.model));
    if (options.pathInitialModelForWeightConversion !== undefined) {
      const converted = convertToPlainLora(tensors, json, options.pathInitialModelForWeightConversion);
      return { dir: name === "default" ? dir : path.join(dir, name), tensors: converted.tensors, configText: formatConfigJson(converted.json) };
    }
    return { dir: name === "default" ? dir : path.join(dir, name), tensors, configText: formatConfigJson(json) };
  });
}

/**
 * Saves adapters in PEFT's layout: `<dir>/adapter_model.safetensors` and
 * `<dir>/adapter_config.json` for the adapter "default", `<dir>/<name>/...` for any other.
 * Python PEFT's `PeftModel.from_pretrained` loads the result.
 *
 * Each adapter's folder is replaced as a whole (see `replaceFolderSync` in io/atomic-folder): the
 * new files are written into a hidden sibling folder, flushed, and switched in by renames, so a
 * failure or a crash leaves either the complete old adapter or the complete new one, never the
 * weights of one save with the config of another. Other files and subfolders already in the
 * folder are kept. With several adapters, each one's folder switches on its own. The folder's
 * parent must be writable.
 *
 * @returns The directories written, one per adapter.
 */
export function saveAdapter(model: LoraModel, dir: string, options: SaveAdapterOptions = {}): string[] {
  return runSync(saveBody(model, dir, options));
}

/** {@link saveAdapter} with asynchronous file writes. */
export function saveAdapterAsync(model: LoraModel, dir: string, options: SaveAdapterOptions = {}): Promise<string[]> {
  return runAsync(saveBody(model, dir, options));
}

/** The two files of one adapter, written into the folder `temp` that then replaces the adapter's. */
function* writeAdapterFiles(temp: string, plan: SavePlan): TwinBody<void> {
  const weights = path.join(temp, ADAPTER_WEIGHTS_NAME);
  const config = path.join(temp, ADAPTER_CONFIG_NAME);
  yield* step(
    () => saveSafetensorsSync(weights, plan.tensors, WEIGHTS_METADATA),
    () => saveSafetensors(weights, plan.tensors, WEIGHTS_METADATA),
  );
  yield* step(
    () => writeFileAtomicSync(config, plan.configText),
    () => writeFileAtomic(config, plan.configText),
  );
}

/** {@link saveAdapter}'s body: plan every adapter (checks included), then replace each one's folder. */
function* saveBody(model: LoraModel, dir: string, options: SaveAdapterOptions): TwinBody<string[]> {
  const plans = planSave(model, dir, options);
  for (const p of plans) {
    yield* step(
      () => replaceFolderSync(p.dir, (temp) => runSync(writeAdapterFiles(temp, p))),
      () => replaceFolder(p.dir, (temp) => runAsync(writeAdapterFiles(temp, p))),
    );
  }
  return plans.map((p) => p.dir);
}

/** The subfolders of `dir` that hold an adapter (as {@link saveAdapter} writes adapters other than "default"). */
export function adapterSubfolders(dir: string): string[] {
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return [];
  }
  return entries
    .filter((e) => e.isDirectory() && !e.name.startsWith(".") && fs.existsSync(path.join(dir, e.name, ADAPTER_CONFIG_NAME)))
    .map((e) => e.name)
    .sort();
}

/**
 * Finds an adapter's files: `<dir>/<adapterName>/` when `adapterName` is given, is not "default"
 * and that subfolder holds an adapter_config.json (the layout {@link saveAdapter} writes), else
 * `<dir>` itself. A folder that a save interrupted between its two renames left only as its
 * backup is found there. Throws a FormatError naming the missing path; when `<dir>` holds no
 * adapter itself but has adapter subfolders, the message lists them and suggests `adapterName`.
 */
export function locateAdapter(dir: string, adapterName?: string): AdapterLocation {
  if (typeof dir !== "string" || dir.length === 0) throw new TypeError(`dir: expected an adapter directory path, got ${describe(dir)}`);
  const found = findFolderOrBackup(dir);
  if (found === null) throw new FormatError(`${dir}: no such adapter directory`);
  if (!fs.statSync(found).isDirectory()) {
    throw new FormatError(`${dir}: not a directory (an adapter is a directory holding ${ADAPTER_CONFIG_NAME} and ${ADAPTER_WEIGHTS_NAME})`);
  }
  let base = found;
  if (adapterName !== undefined && adapterName !== "default") {
    const sub = findFolderOrBackup(path.join(found, adapterName));
    if (sub !== null && fs.existsSync(path.join(sub, ADAPTER_CONFIG_NAME))) base = sub;
  }
  const configPath = path.join(base, ADAPTER_CONFIG_NAME);
  const weightsPath = path.join(base, ADAPTER_WEIGHTS_NAME);
  if (!fs.existsSync(configPath)) {
    const subfolders = base === found ? adapterSubfolders(found) : [];
    if (subfolders.length > 0) {
      const asked = adapterName === undefined ? "" : ` and none is called ${JSON.stringify(adapterName)}`;
      throw new FormatError(
        `${dir}: holds no adapter itself but adapters in the subfolders ${subfolders.join(", ")}${asked} ` +
          `(saveAdapter puts adapters other than "default" in subfolders); pick one with adapterName: ${JSON.stringify(subfolders[0])} ` +
          `(torch-lora CLI: --adapter-name ${subfolders[0]})`,
      );
    }
    throw new FormatError(`${configPath}: missing (an adapter directory holds ${ADAPTER_CONFIG_NAME} and ${ADAPTER_WEIGHTS_NAME})`);
  }
  if (!fs.existsSync(weightsPath)) {
    const bin = fs.existsSync(path.join(base, "adapter_model.bin"));
    throw new FormatError(
      `${weightsPath}: missing` + (bin ? " (this adapter was saved as adapter_model.bin, a pickle; save it again with safe_serialization=True)" : ""),
    );
  }
  return { dir: base, configPath, weightsPath };
}

/**
 * Reads and checks an adapter_config.json (synchronously): the PEFT fields mapped to a
 * {@link LoraConfig}, validated, with the fields from newer PEFT versions that were ignored.
 */
export function readAdapterConfig(configPath: string): PeftConfigReading & { resolved: ResolvedLoraConfig } {
  return runSync(readConfigBody(configPath));
}

/** {@link readAdapterConfig}'s body; a file that cannot be read is a FormatError naming it. */
function* readConfigBody(configPath: string): TwinBody<PeftConfigReading & { resolved: ResolvedLoraConfig }> {
  let text: string;
  try {
    text = yield* step(
      () => readTextFileSync(configPath),
      () => readTextFile(configPath),
    );
  } catch (err) {
    throw err instanceof FormatError ? err : new FormatError(`${configPath}: cannot be read (${(err as Error).message})`);
  }
  return resolvePeftConfig(parseConfigText(text, configPath), configPath);
}

/** One tensor the file must hold, and where it goes. */
export interface Slot {
  key: string;
  shape: number[];
  /** The target tensor, found once the adapter exists. */
  target: (model: LoraModel) => Tensor;
}

const shapeText = (s: readonly number[]): string => `[${s.join(", ")}]`;

/**
 * Works out every key the weights file must hold for `config` on `model`, and checks the file
 * against it: missing keys, unexpected keys, shapes and dtypes. Nothing in the model changes.
 */
export function planLoad(model: Module, config: ResolvedLoraConfig, name: string, tensors: Record<string, Tensor>, loc: AdapterLocation): Slot[] {
  const userModel = model instanceof LoraModel ? model.model : model;
  // Entries absent from this model are tolerated, as PEFT does, and recorded on the LoraModel.
  const targets = selectTargets(userModel, config, false, peftFieldNaming(loc.configPath)).selected;
  const slots: Slot[] = [];
  const fresh = new Set<string>();
  for (const [p, module] of targets) {
    const base = module instanceof LoraLayer ? module.base_layer : module;
    if (!(module instanceof LoraLayer)) fresh.add(p);
    const { r } = layerSettings(config, p);
    const factor = (which: 0 | 1) => (m: LoraModel) =>
      m
        .loraLayers()
        .find(([q]) => q === p)![1]
        .factors(name)[which];
    const [a, b] = savedFactorKeys(base instanceof Embedding ? "embedding" : "linear");
    const [inputs, outputs] = base instanceof Embedding ? [base.numEmbeddings, base.embeddingDim] : [base.inFeatures, base.outFeatures];
    slots.push({ key: `${PEFT_KEY_PREFIX}${p}.${a}`, shape: [r, inputs], target: factor(0) });
    slots.push({ key: `${PEFT_KEY_PREFIX}${p}.${b}`, shape: [outputs, r], target: factor(1) });
    if (config.useDora) {
      const features = base instanceof Embedding ? base.embeddingDim : base.outFeatures;
      const magnitude = (m: LoraModel) =>
        m
          .loraLayers()
          .find(([q]) => q === p)![1]
          .magnitude(name)!;
      slots.push({ key: `${PEFT_KEY_PREFIX}${p}.${MAGNITUDE_KEY}`, shape: [features], target: magnitude });
    }
  }
  // PEFT also saves base weights in an adapter file (a targeted or resized embedding, with
  // save_embedding_layers); its loader copies them into the model, and so do we.
  const factorTensors = new Set<Tensor>();
  if (model instanceof LoraModel) {
    for (const [, layer] of model.loraLayers()) for (const n of layer.adapterNames) layer.adapterParameters(n).forEach((t) => factorTensors.add(t));
  }
  const baseParams = new Map<string, Tensor>();
  for (const [n, t] of userModel.namedParameters()) {
    if (factorTensors.has(t)) continue;
    const [owner, last] = splitModulePath(n);
    const peftName = fresh.has(owner) ? `${owner}.${BASE_LAYER_KEY}.${last}` : n;
    baseParams.set(`${PEFT_KEY_PREFIX}${peftName}`, t);
  }
  for (const [key, t] of baseParams) {
    if (key in tensors) slots.push({ key, shape: t.shape, target: () => t });
  }

  const problems: string[] = [];
  const expected = new Set(slots.map((s) => s.key));
  const missing = slots.filter((s) => !(s.key in tensors)).map((s) => s.key);
  const unexpected = Object.keys(tensors).filter((k) => !expected.has(k));
  const list = (keys: string[]): string => keys.slice(0, 12).join(", ") + (keys.length > 12 ? `, ... (${keys.length} in all)` : "");
  if (missing.length) problems.push(`missing keys: ${list(missing)}`);
  if (unexpected.length) {
    const withName = liveLoraKeyPattern(name);
    const named = unexpected.some((k) => withName.test(k));
    problems.push(
      `unexpected keys: ${list(unexpected)}` +
        (named
          ? " (these keys carry the adapter name; PEFT strips it when saving)"
          : " (the config's target_modules does not select these modules in this model)"),
    );
  }
  for (const s of slots) {
    const t = tensors[s.key];
    if (!t) continue;
    if (t.shape.join() !== s.shape.join())
      problems.push(`${s.key}: shape ${shapeText(t.shape)} in the file, ${shapeText(s.shape)} expected by the model and config`);
    else if (!isFloatingDtype(t.dtype)) problems.push(`${s.key}: dtype ${t.dtype}, expected a floating dtype`);
  }
  if (problems.length) throw new FormatError(`${loc.weightsPath}: does not fit the model: ${problems.join("; ")}`);
  return slots;
}

function checkLoadArgs(model: unknown, options: LoadAdapterOptions): { name: string; trainable: boolean; adapterOptions: AdapterOptions } {
  if (!(model instanceof Module)) throw new TypeError(`model: expected an nn.Module or a LoraModel, got ${describe(model)}`);
  optionsObject(options);
  const name = checkAdapterName(options.adapterName ?? "default");
  if (model instanceof LoraModel && model.adapterNames.includes(name)) {
    throw new ConfigError(`adapterName: the model already has an adapter called "${name}"; pass another adapterName or deleteAdapter("${name}") first`);
  }
  const trainable = options.isTrainable ?? false;
  if (typeof trainable !== "boolean") throw new TypeError(`isTrainable: expected a boolean, got ${describe(trainable)}`);
  const autocastAdapterDtype = options.autocastAdapterDtype ?? true;
  if (typeof autocastAdapterDtype !== "boolean") throw new TypeError(`autocastAdapterDtype: expected a boolean, got ${describe(autocastAdapterDtype)}`);
  return { name, trainable, adapterOptions: { autocastAdapterDtype, unmatchedTargets: "record" } };
}

/** Injects (or adds) the adapter and copies the checked tensors in. */
function apply(model: Module, config: LoraConfig, args: ReturnType<typeof checkLoadArgs>, slots: Slot[], tensors: Record<string, Tensor>): LoraModel {
  const { name, trainable, adapterOptions } = args;
  const existing = model instanceof LoraModel ? model : null;
  // The file holds the factors: a PiSSA/OLoRA init must not rewrite the (already residual) base.
  const fromFile = { ...adapterOptions, factorsFromFile: true };
  const lora = existing ?? injectAdapter(model, config, name, fromFile);
  if (existing) existing.addAdapter(name, config, fromFile);
  try {
    noGrad(() => {
      for (const s of slots) copyInto(s.target(lora), tensors[s.key]);
    });
  } catch (err) {
    // Not expected after the checks above; leave no half-loaded adapter behind.
    if (existing) existing.deleteAdapter(name);
    else lora.unload();
    throw err;
  }
  if (!trainable) {
    lora.setRequiresGrad(name, false);
    lora.eval();
  }
  return lora;
}

/**
 * Loads an adapter saved in PEFT's layout (by {@link saveAdapter} or by Python PEFT's
 * `save_pretrained`) into `model`: a plain module gets the adapter injected, a LoraModel gets it
 * added next to its adapters. Every key, shape and config field is checked before the model is
 * touched, so a failed load changes nothing. Entries of a `target_modules` list that match no
 * module of this model are skipped, as PEFT does, and listed in the returned model's
 * `unmatchedTargets[adapterName]`. On a float16/bfloat16 model the factors stay float32 unless
 * `autocastAdapterDtype` is false.
 *
 * @param model An nn.Module or a LoraModel.
 * @param dir The adapter directory (or its parent, with `adapterName` naming the subfolder).
 * @returns The LoraModel holding the adapter.
 * @throws FormatError for a missing file, bad JSON, a missing/unexpected key or a shape mismatch
 *   (naming the file and key); ConfigError for an unsupported or invalid config field (naming it).
 */
export function loadAdapter<M extends Module>(model: LoraModel<M>, dir: string, options?: LoadAdapterOptions): LoraModel<M>;
export function loadAdapter<M extends Module>(model: M, dir: string, options?: LoadAdapterOptions): LoraModel<M>;
export function loadAdapter(model: Module, dir: string, options: LoadAdapterOptions = {}): LoraModel {
  return runSync(loadBody(model, dir, options));
}

/** {@link loadAdapter} with asynchronous file reads. */
export async function loadAdapterAsync<M extends Module>(model: LoraModel<M>, dir: string, options?: LoadAdapterOptions): Promise<LoraModel<M>>;
export async function loadAdapterAsync<M extends Module>(model: M, dir: string, options?: LoadAdapterOptions): Promise<LoraModel<M>>;
export function loadAdapterAsync(model: Module, dir: string, options: LoadAdapterOptions = {}): Promise<LoraModel> {
  return runAsync(loadBody(model, dir, options));
}

/**
 * {@link loadAdapter}'s body: check the arguments and find the files, read the config (checked
 * before the weights are read), read the weights, then plan and apply. A hot swap reads
 * synchronously in both twins.
 */
function* loadBody(model: Module, dir: string, options: LoadAdapterOptions): TwinBody<LoraModel> {
  if (options?.hotswap !== undefined) return hotswapAdapter(model, dir, options.hotswap);
  const args = checkLoadArgs(model, options);
  const loc = locateAdapter(dir, options.adapterName);
  const { config, resolved } = yield* readConfigBody(loc.configPath);
  const tensors = yield* step(
    () => loadSafetensorsSync(loc.weightsPath),
    () => loadSafetensors(loc.weightsPath),
  );
  // Planned after the last step, so that with the asynchronous reads the checks see the model as
  // it is when it is changed.
  const slots = planLoad(model, resolved, args.name, tensors, loc);
  return apply(model, config, args, slots, tensors);
}
