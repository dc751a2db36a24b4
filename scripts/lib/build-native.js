"use strict";
// The cmake-js build of the addon into <root>/build/Release, skipped when the addon is newer
// than its sources and was built against the same libtorch. Used by setup.js (a clone of the
// repo) and install.js (an installed package without a fitting prebuild).
const fs = require("fs");
const os = require("os");
const path = require("path");
const { run } = require("./run");
const { describeLibtorch } = require("./find-libtorch");
const { withBuildLock } = require("./build-lock");

function newestMtime(dir, filter) {
  let newest = 0;
  if (!fs.existsSync(dir)) return 0;
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestMtime(p, filter));
    else if (filter(entry.name)) newest = Math.max(newest, fs.statSync(p).mtimeMs);
  }
  return newest;
}

function mtime(file) {
  return fs.existsSync(file) ? fs.statSync(file).mtimeMs : 0;
}

const TORCH_FLAGS_MODES = ["cmake", "files"];

/**
 * How CMakeLists.txt learns libtorch's build flags, and why: {mode: "cmake" | "files", reason}.
 * TORCH_LORA_TORCH_FLAGS decides when set (an empty value counts as unset). Otherwise a CUDA
 * libtorch gets "files": find_package(Torch) would require the CUDA toolkit (nvcc), which pip
 * wheels of torch do not include and the addon does not need (it includes no CUDA headers).
 * A CPU libtorch keeps "cmake", whose find_package(Torch) needs nothing more.
 */
function torchFlagsMode(found, env = process.env) {
  const chosen = env.TORCH_LORA_TORCH_FLAGS;
  if (chosen) {
    if (!TORCH_FLAGS_MODES.includes(chosen)) {
      throw new Error(
        `TORCH_LORA_TORCH_FLAGS=${JSON.stringify(chosen)} is not a way to learn libtorch's build flags: ` +
          `use "cmake" (find_package(Torch); a CUDA libtorch then needs the CUDA toolkit) or "files" ` +
          `(read from the libtorch's files by scripts/gyp-torch.js), or unset it to choose by the libtorch`,
      );
    }
    return { mode: chosen, reason: `TORCH_LORA_TORCH_FLAGS=${chosen}` };
  }
  if (describeLibtorch(found.torchDir).cuda) {
    return {
      mode: "files",
      reason:
        "a CUDA libtorch: find_package(Torch) would require the CUDA toolkit (nvcc), which the addon does not need; TORCH_LORA_TORCH_FLAGS=cmake uses it anyway",
    };
  }
  return { mode: "cmake", reason: "a CPU libtorch: find_package(Torch); TORCH_LORA_TORCH_FLAGS=files reads the flags from its files instead" };
}

/**
 * The stamp that records which libtorch build/ was configured and built against, with the
 * CMake settings that pin it (so a build configured without them is configured again) and the
 * flags mode (so switching it configures afresh).
 */
function stampOf(found, env = process.env) {
  const { version, cuda } = describeLibtorch(found.torchDir);
  const { mode } = torchFlagsMode(found, env);
  return JSON.stringify({ torchDir: found.torchDir, version, cuda, torchFlags: mode, cmake: torchCmakeDefines(found, mode) });
}

/** True when build/ was configured and built against `found` (its stamp says so). */
function builtAgainst(root, found, env = process.env) {
  const stampFile = path.join(root, "build/libtorch.json");
  return fs.existsSync(stampFile) && fs.readFileSync(stampFile, "utf8") === stampOf(found, env);
}

/**
 * True when build/Release/torch_lora.node (and torch_lora_bench.node, the same build with the
 * benchmark floors, which bench/ loads) is newer than its sources and built against `found`
 * in the flags mode `env` selects.
 */
function isUpToDate(root, found, env = process.env) {
  const addon = path.join(root, "build/Release/torch_lora.node");
  // CMakeLists.txt builds the benchmark addon whenever its source is there.
  if (fs.existsSync(path.join(root, "native/bench.cc")) && !fs.existsSync(path.join(root, "build/Release/torch_lora_bench.node"))) return false;
  const sources = Math.max(
    newestMtime(path.join(root, "native"), (n) => /\.(cc|h)$/.test(n)),
    mtime(path.join(root, "CMakeLists.txt")),
  );
  return fs.existsSync(addon) && mtime(addon) >= sources && builtAgainst(root, found, env);
}

/**
 * The CMake cache entries for a build against `found` in flags `mode` ("cmake" or "files";
 * by default as torchFlagsMode chooses): Torch_DIR and TORCH_LORA_TORCH_FLAGS, and for "cmake"
 * the entries that keep find_package(Torch) inside the libtorch found. TorchConfig.cmake
 * looks for Caffe2 and for libtorch.so / libc10.so with find_package(... PATHS) and
 * find_library(... PATHS), which search the system folders before the PATHS given: with an
 * unpacked distribution on a machine that also has Debian's libtorch-dev, the build would take
 * the system's Caffe2 targets and libraries (and record /usr/lib/<multiarch> first in the rpath).
 * Cache entries set beforehand are used as they are, so name the distribution's own files.
 */
function torchCmakeDefines(found, mode = torchFlagsMode(found).mode) {
  const { libDir, cuda } = describeLibtorch(found.torchDir);
  const defines = { Torch_DIR: found.torchDir, TORCH_LORA_TORCH_FLAGS: mode };
  // Files mode finds nothing by CMake's search: scripts/gyp-torch.js names the files itself.
  if (mode === "files") return defines;
  const caffe2Dir = path.resolve(found.torchDir, "../Caffe2");
  if (fs.existsSync(path.join(caffe2Dir, "Caffe2Config.cmake"))) defines.Caffe2_DIR = caffe2Dir;
  const libraries = { TORCH_LIBRARY: "libtorch.so", c10_LIBRARY: "libc10.so", ...(cuda ? { C10_CUDA_LIBRARY: "libc10_cuda.so" } : {}) };
  for (const [variable, file] of Object.entries(libraries)) {
    if (fs.existsSync(path.join(libDir, file))) defines[variable] = path.join(libDir, file);
  }
  return defines;
}

/** The cmake-js entry point, wherever npm put it (nested or hoisted next to this package). */
function cmakeJsBin(root) {
  return require.resolve("cmake-js/bin/cmake-js", { paths: [root] });
}

/**
 * Builds the addon against `found` unless it is up to date (or `force`). A build folder
 * configured for another libtorch (or none) is configured afresh: cmake-js `compile` alone
 * would keep the cached Torch_DIR and library paths and relink against the old libtorch.
 */
function buildNative(root, found, { force = false, log = console.log, env = process.env } = {}) {
  // Chosen (and TORCH_LORA_TORCH_FLAGS validated) before anything else, so a bad value fails fast.
  torchFlagsMode(found, env);
  if (!force && isUpToDate(root, found, env)) return false;
  // Checked again under the lock: a build that ran meanwhile may have made this one needless.
  return withBuildLock(root, () => (!force && isUpToDate(root, found, env) ? false : buildLocked(root, found, force, log, env)), { log });
}

/** The build itself, run under the build lock. */
function buildLocked(root, found, force, log, env) {
  const { version, cuda } = describeLibtorch(found.torchDir);
  const fresh = force || !builtAgainst(root, found, env);
  log(
    `building the native addon against libtorch ${version} (${cuda ? "CUDA" : "CPU"}) at ${found.torchDir} [found via ${found.source}]${fresh ? ", configured afresh" : ""}`,
  );
  const { mode, reason } = torchFlagsMode(found, env);
  log(`libtorch build flags: ${mode} mode (${reason})`);
  const jobs = String(Math.max(1, os.availableParallelism?.() ?? os.cpus().length));
  const defines = Object.entries(torchCmakeDefines(found, mode)).map(([k, v]) => `--CD${k}=${v}`);
  // The stamp goes first: a failed build must not leave a stamp that claims the old libtorch.
  fs.rmSync(path.join(root, "build/libtorch.json"), { force: true });
  run(process.execPath, [cmakeJsBin(root), fresh ? "rebuild" : "compile", "--out", "build", "--parallel", jobs, ...defines], {
    cwd: root,
  });
  fs.writeFileSync(path.join(root, "build/libtorch.json"), stampOf(found, env));
  return true;
}

module.exports = { buildNative, isUpToDate, torchCmakeDefines, torchFlagsMode, TORCH_FLAGS_MODES, newestMtime, mtime };
