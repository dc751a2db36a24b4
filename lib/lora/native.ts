/** The native LoRA kernels (native/lora.cc), as lib/lora uses them; declared in lib/binding.ts. */
import { LoraAdapterOptions, native, NativeBinding } from "../binding";

export type { LoraAdapterOptions };

/** The LoRA kernel entry points of the addon. */
export type LoraNative = Pick<
  NativeBinding,
  "loraLinear" | "loraEmbedding" | "loraMerge" | "loraMergeAsync" | "loraRestore" | "loraRestoreAsync" | "loraDoraMerge" | "loraDoraMergeAsync"
>;

export const loraNative: LoraNative = native;
