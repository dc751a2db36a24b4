/** Shared helpers for the io tests: temporary folders, hand-built files, the Python check. */
import { tempDir as sharedTempDir } from "../../helpers/temp";
import { hasTorch, runPython as runReferencePython } from "../../helpers/python";

/** A fresh temporary folder, removed by the returned cleanup function (test/helpers/temp.ts). */
export const tempDir = (prefix = "tl-io-"): { dir: string; cleanup: () => void } => sharedTempDir(prefix);

/**
 * Bytes of a safetensors file assembled by hand: the little-endian u64 length of `header`
 * (a JSON string, used verbatim), the header, then `data`. No padding is added.
 */
export function handBuilt(header: string, data: Uint8Array = new Uint8Array(0), declaredLength?: bigint): Buffer {
  const json = Buffer.from(header, "utf8");
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(declaredLength ?? BigInt(json.length));
  return Buffer.concat([prefix, json, data]);
}

/** Little-endian bytes of float32 values. */
export function f32(values: number[]): Buffer {
  return Buffer.from(new Float32Array(values).buffer);
}

/** Whether the reference Python (test/helpers/python.ts) can import torch. */
export const hasPythonTorch = hasTorch;

/** Runs a Python script with the reference Python and returns its stdout; throws with stderr on failure. */
export function runPython(script: string, args: string[] = []): string {
  return runReferencePython(script, { args });
}
