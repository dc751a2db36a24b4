/**
 * File input/output: safetensors reading and writing, atomic file replacement, state dicts.
 * Knows nothing of LoRA; adapters build their on-disk layout on top of these functions.
 *
 * @packageDocumentation
 */
export { writeFileAtomic, writeFileAtomicSync } from "./atomic";
export type { AtomicData, AtomicDataAsync, AtomicWriteOptions } from "./atomic";
export { MAX_HEADER_BYTES, MAX_DIMS } from "./safetensors-format";
export type { SafetensorsHeader, SafetensorsTensorInfo } from "./safetensors-format";
export {
  loadSafetensors,
  loadSafetensorsSync,
  readSafetensorsHeader,
  readSafetensorsHeaderSync,
  loadSafetensorsMetadata,
  loadSafetensorsMetadataSync,
} from "./safetensors-read";
export type { LoadSafetensorsOptions } from "./safetensors-read";
export { saveSafetensors, saveSafetensorsSync } from "./safetensors-write";
export type { TensorRecord } from "./safetensors-write";
export { saveStateDict, saveStateDictSync, loadStateDictFile, loadStateDictFileSync } from "./state-dict";
