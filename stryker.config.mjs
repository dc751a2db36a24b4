// Mutation testing (`npm run mutation`): StrykerJS plants small bugs ("mutants") in lib/lora,
// lib/io and lib/optim, one at a time, and runs the jest tests that cover each; a mutant no
// test notices is a gap in the suite. Slow (hours on 2 cores): not part of CI. See docs/mutation.md.
//
// MUTATION_TESTS narrows the jest run to some test files (comma-separated paths), for a quick
// look at one area, e.g.
//   MUTATION_TESTS=test/optim/clip.test.ts npm run mutation -- --mutate lib/optim/clip.ts
import * as path from "path";

const only = process.env.MUTATION_TESTS?.split(",").filter(Boolean);
// The sandbox copies the sources but not build/ (hundreds of MiB of objects): the tests load
// this checkout's addon instead (the binding honours TORCH_LORA_ADDON).
process.env.TORCH_LORA_ADDON ??= path.resolve("build/Release/torch_lora.node");

/** Tests that cannot see a mutant: they run dist/ or the sources in child processes (the active
 * mutant lives in the jest process), or build native code; and the interop tests, which start
 * transformers in Python for every case (seconds each). Left out to keep the run bounded. */
const outOfReach = [
  "/test/packaging/",
  "/test/cuda/",
  "/test/cli/",
  "/test/training/",
  "/test/core/memory.test.ts",
  "/test/reliability/leaks.test.ts",
  "/test/reliability/api-fuzz.test.ts",
  "/test/reliability/file-fuzz.test.ts",
  "/test/io/safetensors-fuzz.test.ts",
  "/test/interop/",
];

/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  packageManager: "npm",
  testRunner: "jest",
  mutate: ["lib/lora/**/*.ts", "lib/io/**/*.ts", "lib/optim/**/*.ts"],
  coverageAnalysis: "perTest",
  jest: {
    projectType: "custom",
    configFile: "jest.config.js",
    config: only ? { testMatch: only.map((f) => `<rootDir>/${f.replace(/^\.\//, "")}`) } : { testPathIgnorePatterns: ["/node_modules/", ...outOfReach] },
    enableFindRelatedTests: false,
  },
  // The sandbox is a copy of the project; the native addon and dist/ are needed by the tests.
  ignorePatterns: ["/build/", "/prebuilds/", "/bench-results/", "/demo-output/", "/.gyp-stage/", "/build-prebuild/"],
  reporters: ["clear-text", "progress", "html"],
  htmlReporter: { fileName: "reports/mutation/index.html" },
  tempDirName: ".stryker-tmp",
  timeoutMS: 60_000,
};
