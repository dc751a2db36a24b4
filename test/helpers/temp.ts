/**
 * Temporary folders for tests: the one place the suite creates them (under the OS's temporary
 * folder, named by a prefix that says which test made them). Callers remove them when done
 * (`fs.rmSync(dir, { recursive: true, force: true })`, or the cleanup of {@link tempDir}).
 * Plain-JS child-process scripts under test/**\/support/ (loaded by path, without TypeScript) make their own.
 */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";

/** A fresh, empty temporary folder whose name starts with `prefix`. */
export function makeTempDir(prefix = "torch-lora-test-"): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** A fresh temporary folder and the function that removes it with its contents. */
export function tempDir(prefix = "torch-lora-test-"): { dir: string; cleanup: () => void } {
  const dir = makeTempDir(prefix);
  return { dir, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/**
 * A maker of temporary folders named by `prefix`, and the function that removes every folder it
 * made: for a test file that needs a fresh folder per case (`afterAll(cleanup)`).
 */
export function tempDirs(prefix: string): { make: () => string; cleanup: () => void } {
  const made: string[] = [];
  return {
    make: () => {
      const dir = makeTempDir(prefix);
      made.push(dir);
      return dir;
    },
    cleanup: () => {
      for (const dir of made.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
