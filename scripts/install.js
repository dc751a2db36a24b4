#!/usr/bin/env node
"use strict";
// npm `install` step of an installed torch-lora package:
//   1. a prebuilt addon tagged for the libtorch found here, which loads  -> nothing to do;
//   2. else, when a C++ compiler and cmake are on PATH                   -> build with cmake-js;
//   3. else                                                              -> explain and exit 0,
//      so the install succeeds; require("torch-lora") runs this script again when a compiler
//      and cmake have appeared since (it builds then), and otherwise repeats the explanation.
// In a clone of the repository it does nothing: scripts/setup.js (run by `npm test`) builds there,
// and a second build inside `npm ci` would only cost minutes.
//   node scripts/install.js [--build]   (--build: compile from source even if a prebuild fits)
const fs = require("fs");
const path = require("path");
const { spawnSync } = require("child_process");
const { findLibtorch } = require("./lib/find-libtorch");
const { buildNative } = require("./lib/build-native");
const { runtimeLibtorch, fittingPrebuilds, isInstalledPackage, missingToolchain, describeFound, noAddonMessage } = require("./lib/prebuilds");

const root = path.resolve(__dirname, "..");
const log = (msg) => console.log(`[torch-lora install] ${msg}`);

/** Loads an addon in a child process; returns null when it works, else the loader's error. */
function loadError(file) {
  const code = `const b = require(${JSON.stringify(file)}); b.buildInfo();`;
  const r = spawnSync(process.execPath, ["-e", code], { encoding: "utf8", timeout: 120000 });
  return r.status === 0
    ? null
    : (r.stderr || r.stdout || `exit ${r.status}`)
        .trim()
        .split("\n")
        .find((l) => /Error/.test(l)) || "failed";
}

function main() {
  const forceBuild = process.argv.includes("--build");
  if (!forceBuild && !isInstalledPackage(root)) {
    log("repository checkout: nothing to do here (node scripts/setup.js builds the addon)");
    return 0;
  }
  if (!forceBuild && process.env.TORCH_LORA_ADDON) {
    log(`TORCH_LORA_ADDON=${process.env.TORCH_LORA_ADDON} is set: using that addon`);
    return 0;
  }
  const lt = runtimeLibtorch();
  log(describeFound(lt));
  if (!forceBuild && lt && !lt.error) {
    for (const prebuild of fittingPrebuilds(root, lt)) {
      const err = loadError(prebuild);
      if (!err) {
        log(`using the prebuilt addon ${path.relative(root, prebuild)}`);
        return 0;
      }
      log(`the prebuilt addon ${path.relative(root, prebuild)} does not load here: ${err}`);
      log(`  if libtorch is installed outside the default library folders, set LD_LIBRARY_PATH=${lt.libDir}`);
    }
  }
  const missing = missingToolchain();
  if (missing.length === 0 && lt && !lt.error) {
    try {
      buildNative(root, findLibtorch(), { force: forceBuild, log });
      log("built build/Release/torch_lora.node");
      return 0;
    } catch (err) {
      console.error(`[torch-lora install] the source build failed: ${err.message}`);
      return 1;
    }
  }
  console.warn(noAddonMessage(root, lt));
  // The package stays installed; require("torch-lora") repeats this explanation.
  return forceBuild ? 1 : 0;
}

process.exitCode = main();
