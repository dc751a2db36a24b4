/**
 * Independent reference values from PyTorch: runs a Python snippet with `/usr/bin/python3`
 * (the same libtorch build the addon links against), or the Python TORCH_LORA_PYTHON names, and
 * parses the JSON it prints. The one runner of the suite's reference Python.
 * Tests that rely on it skip, tagged with the reason {@link NO_TORCH} (test/helpers/skip.ts),
 * when torch cannot be imported there; the run's summary counts them.
 */
import { spawnSync } from "child_process";
import { NO_TORCH, itUnless } from "./skip";

/** The reference Python: TORCH_LORA_PYTHON, else /usr/bin/python3 (the one runner of the suite's Python). */
export const PYTHON = process.env.TORCH_LORA_PYTHON ?? "/usr/bin/python3";

/**
 * Runs the Python script `script` with the reference Python (`args` as its argv, `input` on its
 * stdin) and returns its stdout; throws with its stderr when it fails.
 */
export function runPython(script: string, options: { args?: string[]; input?: string } = {}): string {
  const r = spawnSync(PYTHON, ["-c", script, ...(options.args ?? [])], { input: options.input, encoding: "utf8", maxBuffer: 64 << 20 });
  if (r.error) throw new Error(`python reference ${PYTHON} could not run: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`python reference failed (${r.status}):\n${r.stderr}`);
  return r.stdout;
}

/** Runs `script` with `input` as JSON on its stdin and returns its last stdout line parsed as JSON. */
export function runPythonJson<T>(script: string, input: unknown): T {
  return JSON.parse(
    runPython(script, { input: JSON.stringify(input) })
      .trim()
      .split("\n")
      .pop() as string,
  ) as T;
}

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
  return runPythonJson<T>(script, inputs);
}
