/**
 * The benchmark addon: build/Release/torch_lora_bench.node, the shipped addon plus the native
 * floor loops of native/bench.cc (CMakeLists.txt builds both; the shipped addon and the prebuilds
 * have no benchmark code). bench/main.ts imports this module first, so lib/binding loads this
 * addon as the one addon of the process (TORCH_LORA_ADDON, inherited by child processes): tensor
 * handles and the floor loops then come from the same library.
 */
import * as fs from "fs";
import * as path from "path";
import type { NativeBinding, NativeTensor as H } from "../lib/binding";

/** The native benchmark loops of native/bench.cc: each runs `n` iterations in C++ and returns the elapsed ns. */
export interface BenchBinding {
  benchLoraLinear(x: H, w: H, b: H | null, A: H, B: H, scale: number, mode: string, g: H | null, n: number): number;
  benchLoraEmbedding(ids: H, w: H, A: H, B: H, scale: number, mode: string, g: H | null, n: number): number;
  benchMergeFloor(w: H, A: H, B: H, scale: number, n: number): number;
  benchSum(x: H, n: number): number;
}

/** build/Release/torch_lora_bench.node of the nearest folder above this file with the package's package.json. */
function benchAddonFile(): string {
  for (let dir = __dirname; path.dirname(dir) !== dir; dir = path.dirname(dir)) {
    const manifest = path.join(dir, "package.json");
    if (fs.existsSync(manifest) && JSON.parse(fs.readFileSync(manifest, "utf8")).name === "torch-lora") {
      return path.join(dir, "build/Release/torch_lora_bench.node");
    }
  }
  throw new Error(`torch-lora bench: no package root above ${__dirname}`);
}

process.env.TORCH_LORA_ADDON ??= benchAddonFile();
// Loaded only now, after TORCH_LORA_ADDON names the benchmark addon (a static import would run first).
// eslint-disable-next-line @typescript-eslint/no-require-imports
const binding = require("../lib/binding") as typeof import("../lib/binding");

/** True when the loaded addon has the floor loops (it is torch_lora_bench.node). */
function hasBenchFloors(n: NativeBinding): n is NativeBinding & BenchBinding {
  const floors: (keyof BenchBinding)[] = ["benchLoraLinear", "benchLoraEmbedding", "benchMergeFloor", "benchSum"];
  return floors.every((name) => typeof Reflect.get(n, name) === "function");
}

if (!hasBenchFloors(binding.native)) {
  throw new Error(
    `torch-lora bench: the addon loaded (${binding.addonPath}) has no benchmark floors; the benchmarks need ` +
      `build/Release/torch_lora_bench.node (npm run setup builds it), loaded before anything else imports lib/binding`,
  );
}

/** The benchmark floors, from the addon the whole process uses. */
export const benchNative: BenchBinding = binding.native;
