/** Shared helpers for the io tests: temporary folders, hand-built files, the Python check. */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { spawnSync } from "child_process";

/** A fresh temporary folder, removed by the returned cleanup function. */
export function tempDir(prefix = "tl-io-"): { dir: string; cleanup: () => void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  return { dir, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

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

let pythonTorch: boolean | undefined;
/** Whether /usr/bin/python3 can import torch (tests needing it skip with a visible note otherwise). */
export function hasPythonTorch(): boolean {
  if (pythonTorch === undefined) {
    const r = spawnSync("/usr/bin/python3", ["-c", "import torch"], { encoding: "utf8" });
    pythonTorch = r.status === 0;
    if (!pythonTorch) console.warn("NOTE: /usr/bin/python3 with torch is not available; the PyTorch cross-checks are skipped");
  }
  return pythonTorch;
}

/** Runs a Python script with /usr/bin/python3 and returns its stdout; throws with stderr on failure. */
export function runPython(script: string, args: string[] = []): string {
  const r = spawnSync("/usr/bin/python3", ["-c", script, ...args], { encoding: "utf8", maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`python failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}
