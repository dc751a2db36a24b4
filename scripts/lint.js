#!/usr/bin/env node
"use strict";
// npm run lint: ESLint over the TypeScript (eslint.config.mjs), then the format checks, prettier
// --check and clang-format --dry-run -Werror, over what scripts/format-checked.json names (the
// whole tree once it is formatted). Exits non-zero on the first gate that fails, naming it.
const { spawnSync } = require("child_process");
const path = require("path");
const { ROOT, checkedScope } = require("./lib/format-scope");

const ESLINT_DIRS = ["lib", "bench", "demo", "examples", "test"];

function bin(name) {
  return path.join(ROOT, "node_modules/.bin", name);
}

/** Runs one gate; false (with its name on stderr) when it fails. */
function gate(label, command, args) {
  if (args.length === 0) return true;
  const r = spawnSync(command, args, { cwd: ROOT, stdio: "inherit" });
  if (r.error && r.error.code === "ENOENT") {
    console.error(
      `lint: ${label}: ${command} is not installed` + (command === "clang-format" ? " (Debian/Ubuntu: apt-get install clang-format)" : " (npm install)"),
    );
    return false;
  }
  if (r.status !== 0) console.error(`lint: ${label} failed`);
  return r.status === 0;
}

function main() {
  const scope = checkedScope();
  const ok = [
    gate("eslint", bin("eslint"), ["--max-warnings", "0", ...ESLINT_DIRS]),
    gate("prettier --check", bin("prettier"), ["--check", ...scope.prettier]),
    gate("clang-format", "clang-format", scope.clangFormat.length ? ["--dry-run", "-Werror", ...scope.clangFormat] : []),
  ].every(Boolean);
  if (!scope.wholeTree) console.log("lint: format checked on the files of scripts/format-checked.json (wholeTree: false)");
  process.exit(ok ? 0 : 1);
}

main();
