/** Helpers for tests that pack torch-lora and install it into a fresh project, as a user would. */
import { spawnSync, SpawnSyncOptions, SpawnSyncReturns } from "child_process";
import * as fs from "fs";
import * as path from "path";

export const ROOT = path.resolve(__dirname, "../..");

/** Runs a command; returns its stdout (and stderr with `withStderr`), throws with both on failure. */
export function sh(cmd: string, args: string[], options: SpawnSyncOptions & { withStderr?: boolean } = {}): string {
  const r = spawnSync(cmd, args, { encoding: "utf8", maxBuffer: 64 << 20, timeout: 150000, ...options });
  const out = `${r.stdout ?? ""}${r.stderr ?? ""}`;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed (exit ${r.status}):\n${out}`);
  return options.withStderr ? out : String(r.stdout);
}

/** A bin folder with node, npm and sh only: what a CI image without build tools offers. */
export function toolchainFreeBin(dir: string): string {
  fs.mkdirSync(dir, { recursive: true });
  const npmCli = fs.realpathSync(sh("sh", ["-c", "command -v npm"]).trim());
  fs.symlinkSync(process.execPath, path.join(dir, "node"));
  fs.symlinkSync(npmCli, path.join(dir, "npm"));
  fs.symlinkSync("/bin/sh", path.join(dir, "sh"));
  return dir;
}

/** Copies the files `npm pack` would ship into `dest` (those `keep` accepts); returns their relative paths. */
export function stagePackage(dest: string, keep: (file: string) => boolean = () => true): string[] {
  const listing = JSON.parse(sh("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], { cwd: ROOT }));
  const files: string[] = listing[0].files.map((f: { path: string }) => f.path).filter(keep);
  for (const f of files) {
    fs.mkdirSync(path.dirname(path.join(dest, f)), { recursive: true });
    fs.copyFileSync(path.join(ROOT, f), path.join(dest, f));
  }
  return files;
}

/** Packs the staged package folder `pkg` into `dest`; returns the tarball's path. */
export function packStaged(pkg: string, dest: string): string {
  const name = JSON.parse(sh("npm", ["pack", "--json", "--ignore-scripts", "--pack-destination", dest], { cwd: pkg }))[0].filename as string;
  return path.join(dest, name);
}

/** A fresh project folder with a package.json and the LoRA smoke script (smoke.js). */
export function makeApp(dir: string): string {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, "package.json"), JSON.stringify({ name: "app", version: "1.0.0", private: true }));
  fs.copyFileSync(path.join(ROOT, "test/packaging/lora-smoke.js"), path.join(dir, "smoke.js"));
  return dir;
}

/** The environment of an install: `PATH` as given, npm's cache shared, no libtorch or addon overrides. */
export function installEnv(PATH: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, PATH, npm_config_cache: sh("npm", ["config", "get", "cache"]).trim() };
  for (const k of Object.keys(env)) if (/^(LIBTORCH|TORCH_LORA_ADDON|TORCH_LORA_BUILD_ON_LOAD|Torch_DIR|TORCH_DIR|CMAKE_PREFIX_PATH)$/.test(k)) delete env[k];
  return env;
}

/** `npm install <tarball>` in `app`, offline when the cache allows; returns its output. */
export function npmInstall(app: string, tarball: string, env: NodeJS.ProcessEnv): string {
  return sh("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund", "--foreground-scripts", tarball], { cwd: app, env, withStderr: true });
}

/** What test/packaging/lora-smoke.js prints. */
export interface Smoke {
  stepZeroEqual: boolean;
  adapterChangesOutput: boolean;
  manualMaxDiff: number;
  mergedMaxDiff: number;
  mergedChangedWeights: boolean;
  unmergeExact: boolean;
  addons: string[];
}

/** The smoke script's result: its last stdout line. */
export function parseSmoke(stdout: string): Smoke {
  return JSON.parse(stdout.trim().split("\n").pop()!);
}

/** The built loader of this checkout, which the fake packages below ship. */
export const BUILT_BINDING = path.join(ROOT, "dist/lib/binding.js");

/**
 * A package at `dir` holding only what the loader needs (dist/lib/binding.js, scripts/ and a
 * package.json naming torch-lora), for tests of how it picks or fails to pick an addon; under a
 * node_modules folder it counts as installed. Returns `dir`.
 */
export function loaderPackage(dir: string): string {
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(path.join(dir, "dist/lib"), { recursive: true });
  fs.copyFileSync(BUILT_BINDING, path.join(dir, "dist/lib/binding.js"));
  fs.cpSync(path.join(ROOT, "scripts"), path.join(dir, "scripts"), { recursive: true });
  fs.writeFileSync(path.join(dir, "package.json"), JSON.stringify({ name: "torch-lora" }));
  return dir;
}

/** Loads the package's binding in a child `node` with exactly `env`; it prints the addon path it loaded. */
export function loadBinding(pkg: string, env: NodeJS.ProcessEnv): SpawnSyncReturns<string> {
  const code = `const b = require(${JSON.stringify(path.join(pkg, "dist/lib/binding.js"))}); console.log(b.addonPath)`;
  return spawnSync(process.execPath, ["-e", code], { env, encoding: "utf8" });
}
