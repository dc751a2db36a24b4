#!/usr/bin/env node
"use strict";
// `npm run prebuild`: builds the addon with node-gyp through prebuildify (binding.gyp) and stores
// it under prebuilds/<platform>-<arch>/, named from the libtorch it was linked against
// (torch1_13_0-cpu-cxx11abi1, torch2_1_0-cu121-cxx11abi0, ...) and the Node-API it uses, and
// records it in prebuilds/prebuild-manifest.json, which the loader matches at run time.
//
// Two variants per libtorch:
//   torch-lora.<tag>.napi.<libc>.node          NAPI_VERSION=8: loads on every Node with Node-API 8
//                                              (TORCH_LORA_NAPI=stable for binding.gyp).
//   torch-lora.<tag>.napi.node<M>.<libc>.node  NAPI_EXPERIMENTAL, made only when the building
//                                              Node's headers offer GC-time finalizers: frees
//                                              dropped tensors during GC, but imports experimental
//                                              symbols, so it is used on Node <M> only (and no
//                                              older a release than the one that built it).
// The loader prefers the second where it fits and falls back to the first.
//
//   node scripts/prebuild.js [--nodedir DIR] [--out DIR] [--from-build | --check]
//   --nodedir DIR  Node headers (DIR/include/node/common.gypi). Default: NODE_HEADERS, then
//                  npm_config_nodedir, then the installation of the running node (no download).
//   --out DIR      write DIR/prebuilds/... instead of <repo>/prebuilds/...
//   --from-build   package the existing cmake-js build (build/Release/torch_lora.node) instead
//                  of compiling again; it is linked the same way (rpath to libtorch's lib dir).
//                  It is recorded as what it is: experimental for this Node major, or stable.
//   --check        build nothing: fail if a listed prebuild is missing or was compiled from
//                  other native sources than the current ones (npm pack runs this).
//
// What each file is (libtorch tag, Node-API kind, Node version) is read from the file itself
// (buildInfo()), never assumed from how it was built. The build runs in a staging folder
// (build-prebuild/) so the cmake-js build in build/ survives.
const fs = require("fs");
const path = require("path");
const { spawnSync } = require("child_process");
const {
  runtimeLibtorch,
  tagOfBuildInfo,
  napiOfBuildInfo,
  prebuildFile,
  napiLabel,
  readManifest,
  writeManifestEntry,
  currentLibc,
  nativeSourceHash,
} = require("./lib/prebuilds");

const root = path.resolve(__dirname, "..");
const log = (msg) => console.log(`[torch-lora prebuild] ${msg}`);

function option(name) {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

/** The folder with include/node/common.gypi for node-gyp's --nodedir, or throws. */
function nodeHeaders() {
  const candidates = [
    option("--nodedir"),
    process.env.NODE_HEADERS,
    process.env.npm_config_nodedir,
    path.resolve(path.dirname(fs.realpathSync(process.execPath)), ".."),
  ];
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

/**
 * Compiles with prebuildify + node-gyp in a staging folder; returns the built .node path.
 * `napiMode` is TORCH_LORA_NAPI for scripts/gyp-torch.js napi-define: "stable" or "auto".
 */
function compileWithPrebuildify(tag, napiMode) {
  const stage = path.join(root, "build-prebuild");
  fs.rmSync(stage, { recursive: true, force: true });
  fs.mkdirSync(stage);
  for (const item of ["native", "scripts", "binding.gyp", "package.json"]) copyTree(path.join(root, item), path.join(stage, item));
  // node-gyp reads npm_config_* from the environment: local headers, and all cores.
  const env = { ...process.env, npm_config_nodedir: nodeHeaders(), npm_config_jobs: "max", JOBS: "max", TORCH_LORA_NAPI: napiMode };
  if (!env.CXX && spawnSync("ccache", ["--version"]).status === 0) env.CXX = "ccache g++";
  log(
    `compiling with node-gyp, Node-API ${napiMode === "stable" ? "8" : "as the headers allow"} (headers from ${env.npm_config_nodedir}); this takes a few minutes`,
  );
  const prebuildifyBin = require.resolve("prebuildify/bin.js", { paths: [root] });
  const args = [prebuildifyBin, "--napi", "--strip", "--tag-libc", "--target", `node@${process.versions.node}`, "--name", `torch-lora.${tag}`];
  const r = spawnSync(process.execPath, args, { cwd: stage, env, stdio: "inherit" });
  if (r.status !== 0) throw new Error(`prebuildify failed (exit ${r.status})`);
  const dir = path.join(stage, "prebuilds", `${process.platform}-${process.arch}`);
  const built = fs.readdirSync(dir).filter((n) => n.startsWith(`torch-lora.${tag}.`) && n.endsWith(".node"));
  if (built.length !== 1) throw new Error(`expected one prebuild in ${dir}, found ${built.join(", ") || "none"}`);
  return path.join(dir, built[0]);
}

/** Does the Node whose headers gyp-torch.js reads offer experimental GC-time finalizers? */
function headersOfferExperimental() {
  const r = spawnSync(process.execPath, [path.join(root, "scripts/gyp-torch.js"), "napi-define"], {
    env: { ...process.env, TORCH_LORA_NAPI: "auto" },
    encoding: "utf8",
  });
  if (r.status !== 0) throw new Error(`scripts/gyp-torch.js napi-define failed:\n${r.stderr}`);
  return r.stdout.trim() === "NAPI_EXPERIMENTAL";
}

/** Checks the addon at `source` against the libtorch `lt`, copies it into place and records it. */
function store(source, lt, outRoot) {
  if (!fs.existsSync(source)) throw new Error(`${source} does not exist: run node scripts/setup.js first`);
  // Tag and Node-API kind come from the addon itself, so a mislabelled prebuild cannot be produced.
  const info = buildInfoOf(source);
  const tag = tagOfBuildInfo(info);
  if (tag !== lt.tag) throw new Error(`${source} was built against ${tag}, but the libtorch found is ${lt.tag}: rebuild it`);
  const napi = napiOfBuildInfo(info);
  const libc = currentLibc();
  const file = prebuildFile(tag, libc, napi);
  const dest = path.join(outRoot, "prebuilds", file);
  fs.mkdirSync(path.dirname(dest), { recursive: true });
  fs.copyFileSync(source, dest);
  const entry = {
    file,
    platform: process.platform,
    arch: process.arch,
    libc,
    ...napi,
    tag,
    torchVersion: info.torchVersion,
    builtWith: info.builtWith,
    cxx11Abi: info.cxx11Abi,
    distBackends: info.distBackends, // c10d backends compiled in (gloo, nccl), from the addon itself
    libtorchLibDir: lt.libDir,
    sourceHash: nativeSourceHash(root),
  };
  writeManifestEntry(outRoot, entry);
  log(`wrote ${dest} (${(fs.statSync(dest).size / 1e6).toFixed(1)} MB, ${napiLabel(entry)}) and prebuilds/prebuild-manifest.json`);
  return entry;
}

/**
 * `--check` (run by `npm pack` through prepack): every prebuild listed in the manifest exists and
 * was compiled from the native sources as they are now, so a package never ships an addon that
 * lags behind its own code. No prebuilds at all passes: the package then builds from source.
 */
function check(outRoot) {
  const entries = readManifest(outRoot);
  const current = nativeSourceHash(root);
  const problems = entries.flatMap((e) => {
    if (!fs.existsSync(path.join(outRoot, "prebuilds", e.file))) return [`${e.file} is listed but missing`];
    if (e.sourceHash !== current) return [`${e.file} was compiled from other native sources (${e.sourceHash || "unrecorded"}, now ${current})`];
    return [];
  });
  if (problems.length) throw new Error(`stale prebuilds:\n  ${problems.join("\n  ")}\n  run npm run prebuild (or delete prebuilds/) before packing`);
  log(entries.length ? `${entries.length} prebuild(s) match the native sources` : "no prebuilds: the package will build from source where it is installed");
}

function main() {
  const outRoot = path.resolve(option("--out") || root);
  if (process.argv.includes("--check")) return check(outRoot);
  const lt = runtimeLibtorch();
  if (!lt || lt.error) throw new Error(lt ? lt.error : "no libtorch found: install one first (see docs/install.md)");
  log(`libtorch ${lt.version} (${lt.variant}, cxx11abi ${lt.cxx11Abi ? 1 : 0}) at ${lt.torchDir} -> tag ${lt.tag}`);
  if (process.argv.includes("--from-build")) {
    store(path.join(root, "build/Release/torch_lora.node"), lt, outRoot);
    return;
  }
  // Each compile empties the staging folder: store one variant before building the next.
  const stable = store(compileWithPrebuildify(lt.tag, "stable"), lt, outRoot);
  if (stable.napi === "experimental")
    throw new Error("TORCH_LORA_NAPI=stable produced an experimental build: binding.gyp does not take napi-define from scripts/gyp-torch.js");
  if (!headersOfferExperimental()) {
    log(`Node ${process.versions.node}'s headers offer no GC-time finalizers: only the stable (N-API 8) prebuild is made`);
    return;
  }
  const experimental = store(compileWithPrebuildify(lt.tag, "auto"), lt, outRoot);
  if (experimental.napi !== "experimental") throw new Error("the experimental build came out stable: check scripts/gyp-torch.js napi-define");
}

try {
  main();
} catch (err) {
  console.error(`[torch-lora prebuild] ${err.message}`);
  process.exit(1);
}
