/**
 * Independent reference values from PyTorch: runs a Python snippet with `/usr/bin/python3`
 * (the same libtorch build the addon links against) and parses the JSON it prints.
 * Tests that rely on it skip, tagged with the reason {@link NO_TORCH} (test/helpers/skip.ts),
 * when torch cannot be imported there; the run's summary counts them.
 */
import { spawnSync } from "child_process";
import { NO_TORCH, itUnless } from "./skip";

const PYTHON = process.env.TORCH_LORA_PYTHON ?? "/usr/bin/python3";

let cached: boolean | undefined;

/** True when the reference Python can `import torch`. */
export function hasTorch(): boolean {
  if (cached === undefined) cached = spawnSync(PYTHON, ["-c", "import torch"], { encoding: "utf8" }).status === 0;
  return cached;
}

/** Why PyTorch comparisons cannot run here ({@link NO_TORCH}), or null when they can. */
export function torchMissing(): string | null {
  return hasTorch() ? null : NO_TORCH;
}

/** `it` when PyTorch is available, else `it.skip` tagged `[skip: no PyTorch to compare against]`. */
export const itTorch = (name: string, fn: () => void, timeout?: number): void => itUnless(torchMissing(), name, fn, timeout);

/**
 * Runs `code` (which must assign a JSON-serialisable value to `out`) and returns `out`.
 * `inputs` is available to the snippet as the dict `inp`; `torch` and `math` are imported.
 */
export function py<T = unknown>(code: string, inputs: Record<string, unknown> = {}): T {
  const script = [
    "import json, math, sys",
    "import torch",
    "torch.set_default_dtype(torch.float64)",
    "inp = json.loads(sys.stdin.read())",
    "def L(t):",
    "    return t.detach().double().reshape(-1).tolist() if isinstance(t, torch.Tensor) else t",
    code,
    "print(json.dumps(out))",
  ].join("\n");
  const r = spawnSync(PYTHON, ["-c", script], { input: JSON.stringify(inputs), encoding: "utf8", maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`python reference failed (${r.status}):\n${r.stderr}`);
  return JSON.parse(r.stdout.trim().split("\n").pop() as string) as T;
}
