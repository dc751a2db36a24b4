#!/usr/bin/env node
"use strict";
// One set-up step for `npm test`, `npm run demo` and `npm run bench` on a fresh clone: the
// system packages of scripts/lib/system-packages.js (libtorch, the build tools and, for the tests
// and the benchmark, the PyTorch they compare against), npm dependencies, the native addon, the
// TypeScript build and, for the tests, the transformers and PEFT of test/interop/
// (scripts/lib/hf-reference.js) — each skipped when already up to date.
//
//   node scripts/setup.js [--for demo|test|bench] [--plan] [--force-build]
//
// --for names the npm script it runs for (default demo: what running the library needs).
// --plan prints, as JSON, what it would install and say, and installs and builds nothing.
const fs = require("fs");
const path = require("path");
const { run } = require("./lib/run");
const { findLibtorch } = require("./lib/find-libtorch");
const { buildNative, newestMtime, mtime } = require("./lib/build-native");
const { commandFrom, gatherFacts, planSetup, pythonHasTorch } = require("./lib/setup-plan");
const { ensureHfReference } = require("./lib/hf-reference");

const root = path.resolve(__dirname, "..");
const forceBuild = process.argv.includes("--force-build");
const planOnly = process.argv.includes("--plan");
const log = (msg) => console.log(`[torch-lora setup] ${msg}`);

/** The value of `--for` (also written `--for=test`), or "demo" when it is absent. */
function commandArgument(argv) {
  const at = argv.findIndex((a) => a === "--for" || a.startsWith("--for="));
  if (at < 0) return "demo";
  return commandFrom(argv[at].startsWith("--for=") ? argv[at].slice("--for=".length) : argv[at + 1]);
}

function ensureNodeModules() {
  const marker = path.join(root, "node_modules/.package-lock.json");
  if (fs.existsSync(marker) && mtime(marker) >= mtime(path.join(root, "package-lock.json"))) return;
  log("installing npm dependencies (npm ci)");
  run("npm", ["ci", "--no-audit", "--no-fund"], { cwd: root });
}

function aptInstall(packages) {
  log(`installing ${packages.join(" ")} with apt-get`);
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  run("apt-get", ["update", "-qq"], { env });
  run("apt-get", ["install", "-y", "-qq", "--no-install-recommends", ...packages], { env });
}

/**
 * Installs what the plan names, after saying up front what it cannot install; returns the
 * libtorch to build against.
 */
function installSystemPackages(command) {
  const facts = gatherFacts(command);
  const plan = planSetup(command, facts);
  for (const notice of plan.notices) log(`note: ${notice}`);
  if (plan.error) throw new Error(plan.error);
  if (plan.apt.length === 0) return facts.libtorch;
  aptInstall(plan.apt);
  if (plan.apt.includes("python3-torch") && !pythonHasTorch(facts.python)) {
    log(`note: ${facts.python} still cannot import torch after installing python3-torch: the PyTorch comparisons will be skipped`);
  }
  const found = facts.libtorch || findLibtorch();
  if (!found) throw new Error("libtorch-dev was installed but TorchConfig.cmake was not found");
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
  const command = commandArgument(process.argv.slice(2));
  if (planOnly) {
    const facts = gatherFacts(command);
    console.log(JSON.stringify({ ...planSetup(command, facts), facts }, null, 2));
    return;
  }
  const libtorch = installSystemPackages(command);
  ensureNodeModules();
  buildNative(root, libtorch, { force: forceBuild, log });
  buildTypeScript();
  if (command === "test") {
    const why = ensureHfReference({ log });
    if (why) log(`note: the interop tests with transformers and PEFT will be skipped: ${why}`);
  }
}

try {
  main();
} catch (err) {
  console.error(`[torch-lora setup] ${err.message}`);
  process.exit(1);
}
