"use strict";
// The cmake-js build of the addon into <root>/build/Release, skipped when the addon is newer
// than its sources and was built against the same libtorch. Used by setup.js (a clone of the
// repo) and install.js (an installed package without a fitting prebuild).
const fs = require("fs");
const os = require("os");
const path = require("path");
const { run } = require("./run");
const { describeLibtorch } = require("./find-libtorch");

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

/** The stamp that records which libtorch build/Release was built against. */
function stampOf(found) {
  const { version, cuda } = describeLibtorch(found.torchDir);
  return JSON.stringify({ torchDir: found.torchDir, version, cuda });
}

/** True when build/Release/torch_lora.node is newer than its sources and built against `found`. */
function isUpToDate(root, found) {
  const addon = path.join(root, "build/Release/torch_lora.node");
  const stampFile = path.join(root, "build/libtorch.json");
  const sources = Math.max(
    newestMtime(path.join(root, "native"), (n) => /\.(cc|h)$/.test(n)),
    mtime(path.join(root, "CMakeLists.txt")),
  );
  return fs.existsSync(addon) && mtime(addon) >= sources && fs.existsSync(stampFile) && fs.readFileSync(stampFile, "utf8") === stampOf(found);
}

/** The cmake-js entry point, wherever npm put it (nested or hoisted next to this package). */
function cmakeJsBin(root) {
  return require.resolve("cmake-js/bin/cmake-js", { paths: [root] });
}

/** Builds the addon against `found` unless it is up to date (or `force`). */
function buildNative(root, found, { force = false, log = console.log } = {}) {
  if (!force && isUpToDate(root, found)) return false;
  const { version, cuda } = describeLibtorch(found.torchDir);
  log(`building the native addon against libtorch ${version} (${cuda ? "CUDA" : "CPU"}) at ${found.torchDir} [found via ${found.source}]`);
  const jobs = String(Math.max(1, os.availableParallelism?.() ?? os.cpus().length));
  run(process.execPath, [cmakeJsBin(root), "compile", "--out", "build", "--parallel", jobs, `--CDTorch_DIR=${found.torchDir}`], {
    cwd: root,
  });
  fs.writeFileSync(path.join(root, "build/libtorch.json"), stampOf(found));
  return true;
}

module.exports = { buildNative, isUpToDate, newestMtime, mtime };
