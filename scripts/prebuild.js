#!/usr/bin/env node
"use strict";
// `npm run prebuild`: builds the addon with node-gyp through prebuildify (binding.gyp) and stores
// it as prebuilds/<platform>-<arch>/torch-lora.<tag>.napi.<libc>.node, where <tag> names the
// libtorch it was linked against (torch1_13_0-cpu-cxx11abi1, torch2_1_0-cu121-cxx11abi0, ...),
// and records it in prebuilds/prebuild-manifest.json, which the loader matches at run time.
//
//   node scripts/prebuild.js [--nodedir DIR] [--out DIR] [--from-build]
//   --nodedir DIR  Node headers (DIR/include/node/common.gypi). Default: NODE_HEADERS, then
//                  npm_config_nodedir, then the installation of the running node (no download).
//   --out DIR      write DIR/prebuilds/... instead of <repo>/prebuilds/...
//   --from-build   package the existing cmake-js build (build/Release/torch_lora.node) instead
//                  of compiling again; it is linked the same way (rpath to libtorch's lib dir).
//
// The build runs in a staging folder (build-prebuild/) so the cmake-js build in build/ survives.
const fs = require("fs");
const path = require("path");
const { spawnSync } = require("child_process");
const { runtimeLibtorch, tagOfBuildInfo, writeManifestEntry, currentLibc, nativeSourceHash } = require("./lib/prebuilds");

const root = path.resolve(__dirname, "..");
const log = (msg) => console.log(`[torch-lora prebuild] ${msg}`);

function option(name) {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

/** The folder with include/node/common.gypi for node-gyp's --nodedir, or throws. */
function nodeHeaders() {
  const candidates = [option("--nodedir"), process.env.NODE_HEADERS, process.env.npm_config_nodedir, path.resolve(path.dirname(fs.realpathSync(process.execPath)), "..")];
  const dir = candidates.filter(Boolean).find((d) => fs.existsSync(path.join(d, "include/node/common.gypi")));
  if (!dir) {
    throw new Error(`no Node headers found (looked in ${candidates.filter(Boolean).join(", ")}); pass --nodedir DIR with DIR/include/node/common.gypi`);
  }
  return dir;
}

/** buildInfo() of an addon, read in a child process so a bad build cannot take this one down. */
function buildInfoOf(file) {
  const r = spawnSync(process.execPath, ["-p", `JSON.stringify(require(${JSON.stringify(file)}).buildInfo())`], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`the built addon ${file} does not load:\n${r.stderr}`);
  return JSON.parse(r.stdout);
}

function copyTree(from, to) {
  fs.cpSync(from, to, { recursive: true, filter: (src) => !/node_modules|\/build-prebuild\b/.test(path.relative(root, src)) });
}

/** Compiles with prebuildify + node-gyp in a staging folder; returns the built .node path. */
function compileWithPrebuildify(tag) {
  const stage = path.join(root, "build-prebuild");
  fs.rmSync(stage, { recursive: true, force: true });
  fs.mkdirSync(stage);
  for (const item of ["native", "scripts", "binding.gyp", "package.json"]) copyTree(path.join(root, item), path.join(stage, item));
  // node-gyp reads npm_config_* from the environment: local headers, and all cores.
  const env = { ...process.env, npm_config_nodedir: nodeHeaders(), npm_config_jobs: "max", JOBS: "max" };
  if (!env.CXX && spawnSync("ccache", ["--version"]).status === 0) env.CXX = "ccache g++";
  log(`compiling with node-gyp (headers from ${env.npm_config_nodedir}); this takes a few minutes`);
  const prebuildifyBin = require.resolve("prebuildify/bin.js", { paths: [root] });
  const args = [prebuildifyBin, "--napi", "--strip", "--tag-libc", "--target", `node@${process.versions.node}`, "--name", `torch-lora.${tag}`];
  const r = spawnSync(process.execPath, args, { cwd: stage, env, stdio: "inherit" });
  if (r.status !== 0) throw new Error(`prebuildify failed (exit ${r.status})`);
  const dir = path.join(stage, "prebuilds", `${process.platform}-${process.arch}`);
  const built = fs.readdirSync(dir).filter((n) => n.startsWith(`torch-lora.${tag}.`) && n.endsWith(".node"));
  if (built.length !== 1) throw new Error(`expected one prebuild in ${dir}, found ${built.join(", ") || "none"}`);
  return path.join(dir, built[0]);
}

function main() {
  const outRoot = path.resolve(option("--out") || root);
  const lt = runtimeLibtorch();
  if (!lt || lt.error) throw new Error(lt ? lt.error : "no libtorch found: install one first (see docs/install.md)");
  log(`libtorch ${lt.version} (${lt.variant}, cxx11abi ${lt.cxx11Abi ? 1 : 0}) at ${lt.torchDir} -> tag ${lt.tag}`);
  const source = process.argv.includes("--from-build") ? path.join(root, "build/Release/torch_lora.node") : compileWithPrebuildify(lt.tag);
  if (!fs.existsSync(source)) throw new Error(`${source} does not exist: run node scripts/setup.js first`);
  // The tag comes from the addon itself, so a mislabelled prebuild cannot be produced.
  const info = buildInfoOf(source);
  const tag = tagOfBuildInfo(info);
  if (tag !== lt.tag) throw new Error(`${source} was built against ${tag}, but the libtorch found is ${lt.tag}: rebuild it`);
  const libc = currentLibc();
  const file = `${process.platform}-${process.arch}/torch-lora.${tag}.napi.${libc}.node`;
  const dest = path.join(outRoot, "prebuilds", file);
  fs.mkdirSync(path.dirname(dest), { recursive: true });
  fs.copyFileSync(source, dest);
  writeManifestEntry(outRoot, {
    file,
    platform: process.platform,
    arch: process.arch,
    libc,
    napi: 8,
    tag,
    torchVersion: info.torchVersion,
    builtWith: info.builtWith,
    cxx11Abi: info.cxx11Abi,
    libtorchLibDir: lt.libDir,
    sourceHash: nativeSourceHash(root),
  });
  log(`wrote ${dest} (${(fs.statSync(dest).size / 1e6).toFixed(1)} MB) and prebuilds/prebuild-manifest.json`);
}

try {
  main();
} catch (err) {
  console.error(`[torch-lora prebuild] ${err.message}`);
  process.exit(1);
}
