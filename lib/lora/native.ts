/** The native LoRA kernels (native/lora.cc), as lib/lora uses them; declared in lib/binding.ts. */
import { native, NativeBinding, PackedAdapters } from "../binding";

export type { PackedAdapters };

/** The LoRA kernel entry points of the addon. */
export type LoraNative = Pick<NativeBinding, "loraLinear" | "loraEmbedding" | "loraMerge" | "loraMergeAsync" | "loraRestore" | "loraRestoreAsync">;

export const loraNative: LoraNative = native;
