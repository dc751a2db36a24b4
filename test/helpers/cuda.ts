/**
 * Jest helpers for tests that need a GPU: they run only where libtorch sees one.
 *
 * `TORCH_LORA_CUDA_TESTS_DEVICE=cpu` rehearses them on the CPU instead (scripts/gpu-check.sh
 * --rehearse does this): the same test code, builds and scripts run on a machine without a GPU,
 * so a mistake in them shows up before the rare GPU run. Tests that need two different devices
 * skip, visibly, during a rehearsal.
 */
import { cuda } from "../../lib";
import type { Device } from "../../lib";
import { NO_GPU, skipTitle } from "./skip";

const override = process.env.TORCH_LORA_CUDA_TESTS_DEVICE;

// The GPU-vs-CPU tolerances assume full fp32 matmuls. NGC containers set this variable to 1,
// which makes libtorch use TF32 (~1e-3 relative error); libtorch reads it at the first CUDA
// matmul, so setting it here, before any test runs, is in time.
process.env.TORCH_ALLOW_TF32_CUBLAS_OVERRIDE = "0";

/** The device the CUDA tests run on: cuda:0, or the CPU during a rehearsal. */
export const GPU: Device = override === "cpu" ? "cpu" : "cuda:0";

/** True when the CUDA tests run on the CPU to check themselves. */
export const rehearsal = GPU === "cpu";

if (override !== undefined && override !== "cpu") {
  throw new Error(`TORCH_LORA_CUDA_TESTS_DEVICE: expected "cpu" (a rehearsal on the CPU) or unset, got ${JSON.stringify(override)}`);
}

/** Why CUDA tests cannot run here, or null when they can. */
export function cudaUnavailableReason(): string | null {
  if (rehearsal || cuda.isAvailable()) return null;
  return "this libtorch build has no CUDA or no GPU is visible (run scripts/gpu-check.sh on a GPU machine)";
}

/**
 * Skips a block, tagged {@link NO_GPU} in its title (test/helpers/skip.ts), with the longer
 * reason on stderr: "[cuda] SKIPPED" marks CUDA tests that did not run for want of a GPU
 * (scripts/gpu-check.sh fails on it); "[cuda] not rehearsed" marks those a rehearsal leaves out.
 */
function skipVisibly(name: string, reason: string, body: () => void, mark = "SKIPPED"): void {
  process.stderr.write(`[cuda] ${mark} "${name}": ${reason}\n`);
  describe.skip(skipTitle(`[cuda] ${name}`, NO_GPU), body);
}

/**
 * `describe` for CUDA tests: runs `body` when `cuda.isAvailable()` (or during a rehearsal), and
 * otherwise registers the block as skipped and prints a note saying so, so a CPU-only run never
 * passes them silently.
 */
export function describeCuda(name: string, body: () => void): void {
  const reason = cudaUnavailableReason();
  if (reason !== null) return skipVisibly(name, reason, body);
  describe(rehearsal ? `[cuda rehearsal on cpu] ${name}` : `[cuda] ${name}`, body);
}

/**
 * `describe` for tests that need the GPU and the CPU to be different devices (transfers, device
 * mismatch errors): like `describeCuda`, but skipped, visibly, during a rehearsal.
 */
export function describeCudaOnly(name: string, body: () => void): void {
  if (rehearsal) return skipVisibly(name, "needs a real GPU next to the CPU (this is a rehearsal on the CPU)", body, "not rehearsed");
  describeCuda(name, body);
}
