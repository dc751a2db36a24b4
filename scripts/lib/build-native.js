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

/**
 * The stamp that records which libtorch build/ was configured and built against, with the
 * CMake settings that pin it (so a build configured without them is configured again).
 */
function stampOf(found) {
  const { version, cuda } = describeLibtorch(found.torchDir);
  return JSON.stringify({ torchDir: found.torchDir, version, cuda, cmake: torchCmakeDefines(found) });
}

/** True when build/ was configured and built against `found` (its stamp says so). */
function builtAgainst(root, found) {
  const stampFile = path.join(root, "build/libtorch.json");
  return fs.existsSync(stampFile) && fs.readFileSync(stampFile, "utf8") === stampOf(found);
}

/** True when build/Release/torch_lora.node is newer than its sources and built against `found`. */
function isUpToDate(root, found) {
  const addon = path.join(root, "build/Release/torch_lora.node");
  const sources = Math.max(
    newestMtime(path.join(root, "native"), (n) => /\.(cc|h)$/.test(n)),
    mtime(path.join(root, "CMakeLists.txt")),
  );
  return fs.existsSync(addon) && mtime(addon) >= sources && builtAgainst(root, found);
}

/**
 * CMake cache entries that keep find_package(Torch) inside the libtorch found. TorchConfig.cmake
 * looks for Caffe2 and for libtorch.so / libc10.so with find_package(... PATHS) and
 * find_library(... PATHS), which search the system folders before the PATHS given: with an
 * unpacked distribution on a machine that also has Debian's libtorch-dev, the build would take
 * the system's Caffe2 targets and libraries (and record /usr/lib/<multiarch> first in the rpath).
 * Cache entries set beforehand are used as they are, so name the distribution's own files.
 */
function torchCmakeDefines(found) {
  const { libDir, cuda } = describeLibtorch(found.torchDir);
  const defines = { Torch_DIR: found.torchDir };
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
function buildNative(root, found, { force = false, log = console.log } = {}) {
  if (!force && isUpToDate(root, found)) return false;
  // Checked again under the lock: a build that ran meanwhile may have made this one needless.
  return withBuildLock(root, () => (!force && isUpToDate(root, found) ? false : buildLocked(root, found, force, log)), { log });
}

/** The build itself, run under the build lock. */
function buildLocked(root, found, force, log) {
  const { version, cuda } = describeLibtorch(found.torchDir);
  const fresh = force || !builtAgainst(root, found);
  log(`building the native addon against libtorch ${version} (${cuda ? "CUDA" : "CPU"}) at ${found.torchDir} [found via ${found.source}]${fresh ? ", configured afresh" : ""}`);
  const jobs = String(Math.max(1, os.availableParallelism?.() ?? os.cpus().length));
  const defines = Object.entries(torchCmakeDefines(found)).map(([k, v]) => `--CD${k}=${v}`);
  // The stamp goes first: a failed build must not leave a stamp that claims the old libtorch.
  fs.rmSync(path.join(root, "build/libtorch.json"), { force: true });
  run(process.execPath, [cmakeJsBin(root), fresh ? "rebuild" : "compile", "--out", "build", "--parallel", jobs, ...defines], {
    cwd: root,
  });
  fs.writeFileSync(path.join(root, "build/libtorch.json"), stampOf(found));
  return true;
}

module.exports = { buildNative, isUpToDate, torchCmakeDefines, newestMtime, mtime };
