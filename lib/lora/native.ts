/** The native LoRA kernels (native/lora.cc), typed. */
import { native, NativeTensor as H } from "../binding";

/** Flat adapter list: [A, B, scale, dropout, A, B, scale, dropout, ...]. */
export type PackedAdapters = (H | number)[];

export interface LoraNative {
  loraLinear(x: H, weight: H, bias: H | null, fanInFanOut: boolean, training: boolean, adapters: PackedAdapters): H;
  loraEmbedding(ids: H, weight: H, paddingIdx: number, adapters: PackedAdapters): H;
  loraMerge(weight: H, adapters: PackedAdapters, kind: "linear" | "embedding", fanInFanOut: boolean, safe: boolean, keepBackup: boolean): H | null;
  loraMergeAsync(weight: H, adapters: PackedAdapters, kind: "linear" | "embedding", fanInFanOut: boolean, safe: boolean, keepBackup: boolean): Promise<H | null>;
  loraRestore(weight: H, backup: H): void;
  loraRestoreAsync(weight: H, backup: H): Promise<void>;
}

export const loraNative = native as unknown as LoraNative;
