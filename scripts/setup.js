#!/usr/bin/env node
"use strict";
// One set-up step for `npm test`, `npm run demo` and `npm run bench` on a fresh clone:
// npm dependencies, libtorch (+ OpenBLAS on Debian), the native addon and the TypeScript
// build — each skipped when already up to date.
const fs = require("fs");
const path = require("path");
const { run } = require("./lib/run");
const { findLibtorch } = require("./lib/find-libtorch");
const { buildNative, newestMtime, mtime } = require("./lib/build-native");

const root = path.resolve(__dirname, "..");
const forceBuild = process.argv.includes("--force-build");
const log = (msg) => console.log(`[torch-lora setup] ${msg}`);

function ensureNodeModules() {
  const marker = path.join(root, "node_modules/.package-lock.json");
  if (fs.existsSync(marker) && mtime(marker) >= mtime(path.join(root, "package-lock.json"))) return;
  log("installing npm dependencies (npm ci)");
  run("npm", ["ci", "--no-audit", "--no-fund"], { cwd: root });
}

const isDebian = () => fs.existsSync("/etc/debian_version");
const isRoot = () => typeof process.getuid === "function" && process.getuid() === 0;

function aptInstall(packages) {
  log(`installing ${packages.join(" ")} with apt-get`);
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  run("apt-get", ["update", "-qq"], { env });
  run("apt-get", ["install", "-y", "-qq", "--no-install-recommends", ...packages], { env });
}

function hasOpenBlas() {
  return ["/usr/lib/x86_64-linux-gnu/openblas-pthread", "/usr/lib/aarch64-linux-gnu/openblas-pthread"].some((d) =>
    fs.existsSync(d),
  );
}

function ensureLibtorch() {
  let found = findLibtorch();
  if (!found) {
    if (!(isDebian() && isRoot())) {
      throw new Error(
        [
          "no libtorch found. Provide one of:",
          "  - LIBTORCH=/path/to/libtorch (an unpacked libtorch distribution from pytorch.org, CPU or CUDA)",
          "  - Torch_DIR or CMAKE_PREFIX_PATH pointing at a folder with TorchConfig.cmake",
          "  - a python3 with torch installed (pip install torch)",
          "  - on Debian/Ubuntu: sudo apt-get install libtorch-dev libopenblas0-pthread",
        ].join("\n"),
      );
    }
    aptInstall(["libtorch-dev", "libopenblas0-pthread"]);
    found = findLibtorch();
    if (!found) throw new Error("libtorch-dev was installed but TorchConfig.cmake was not found");
  }
  // Debian's libtorch falls back to reference BLAS (35x slower matmuls) without OpenBLAS.
  if (found.source === "system" && isDebian() && !hasOpenBlas()) {
    if (isRoot()) aptInstall(["libopenblas0-pthread"]);
    else log("warning: libopenblas0-pthread is not installed; matmuls will run on slow reference BLAS");
  }
  return found;
}

function buildTypeScript() {
  const out = path.join(root, "dist/lib/index.js");
  const sources = Math.max(
    ...["lib", "bench", "demo", "examples"].map((d) => newestMtime(path.join(root, d), (n) => n.endsWith(".ts"))),
    mtime(path.join(root, "tsconfig.json")),
  );
  if (fs.existsSync(out) && mtime(out) >= sources && !forceBuild) return;
  log("compiling TypeScript to dist/");
  run(process.execPath, [path.join(root, "node_modules/typescript/bin/tsc"), "-p", "tsconfig.build.json"], { cwd: root });
  // tsc keeps an unchanged output's old mtime; touch the entry so the check above sees the build.
  const now = new Date();
  fs.utimesSync(out, now, now);
}

function main() {
  ensureNodeModules();
  buildNative(root, ensureLibtorch(), { force: forceBuild, log });
  buildTypeScript();
}

try {
  main();
} catch (err) {
  console.error(`[torch-lora setup] ${err.message}`);
  process.exit(1);
}
