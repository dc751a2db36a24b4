/**
 * State dicts on disk: a record of named tensors saved as one safetensors file. The module side
 * (`Module.stateDict()` / `loadStateDict(record)`) produces and consumes the record.
 */
import { Tensor } from "../tensor";
import { LoadSafetensorsOptions, loadSafetensors, loadSafetensorsSync } from "./safetensors-read";
import { TensorRecord, saveSafetensors, saveSafetensorsSync } from "./safetensors-write";

// What PyTorch-side writers (transformers, PEFT) put in the metadata, so their loaders accept the file.
const DEFAULT_METADATA = { format: "pt" };

function withDefaults(metadata: Record<string, string> | undefined): Record<string, string> {
  return { ...DEFAULT_METADATA, ...(metadata ?? {}) };
}

/**
 * Saves a state dict as a safetensors file, atomically. The metadata gets `format: "pt"` unless
 * `metadata` sets `format` itself, as the PyTorch ecosystem's writers do.
 *
 * @param path The file to create or replace; its folder must exist.
 * @param record Name → Tensor (a record or Map), e.g. from `module.stateDict()`.
 * @param metadata Extra string → string entries for `__metadata__`.
 * @throws An Error with code ENOENT saying that the folder does not exist, before anything is written.
 */
export async function saveStateDict(path: string, record: TensorRecord, metadata?: Record<string, string>): Promise<void> {
  await saveSafetensors(path, record, withDefaults(metadata));
}

/** Synchronous twin of {@link saveStateDict}. */
export function saveStateDictSync(path: string, record: TensorRecord, metadata?: Record<string, string>): void {
  saveSafetensorsSync(path, record, withDefaults(metadata));
}

/**
 * Loads a state dict saved by {@link saveStateDict} or by PyTorch tooling as safetensors, ready
 * for `module.loadStateDict(record)`.
 *
 * @param path The `.safetensors` file.
 * @param options `device`: where the tensors are created (default `"cpu"`).
 */
export async function loadStateDictFile(path: string, options: LoadSafetensorsOptions = {}): Promise<Record<string, Tensor>> {
  return loadSafetensors(path, options);
}

/** Synchronous twin of {@link loadStateDictFile}. */
export function loadStateDictFileSync(path: string, options: LoadSafetensorsOptions = {}): Record<string, Tensor> {
  return loadSafetensorsSync(path, options);
}
