/** Jest helpers for tests that need a GPU: they run only where libtorch sees one. */
import { cuda } from "../../lib";

/** Why CUDA tests cannot run here, or null when they can. */
export function cudaUnavailableReason(): string | null {
  if (cuda.isAvailable()) return null;
  return "this libtorch build has no CUDA or no GPU is visible (run scripts/gpu-check.sh on a GPU machine)";
}

/**
 * `describe` for CUDA tests: runs `body` when `cuda.isAvailable()`, and otherwise registers the
 * block as skipped and prints a note saying so, so a CPU-only run never passes them silently.
 */
export function describeCuda(name: string, body: () => void): void {
  const reason = cudaUnavailableReason();
  if (reason === null) {
    describe(`[cuda] ${name}`, body);
    return;
  }
  // Straight to stderr: jest does not show console output of a file whose tests all skip.
  process.stderr.write(`[cuda] SKIPPED "${name}": ${reason}\n`);
  describe.skip(`[cuda] ${name}`, body);
}
