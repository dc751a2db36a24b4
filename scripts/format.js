#!/usr/bin/env node
"use strict";
// npm run format [files...]: rewrites files in the project's style, prettier for TypeScript and
// JavaScript, clang-format for native/*.cc and *.h. With no files: the whole tree (then set
// wholeTree in scripts/format-checked.json, so that npm run lint checks all of it from then on).
const { spawnSync } = require("child_process");
const path = require("path");
const { ROOT, WHOLE_TREE, byFormatter, nativeFiles } = require("./lib/format-scope");

function run(command, args) {
  if (args.length === 0) return;
  const r = spawnSync(command, args, { cwd: ROOT, stdio: "inherit" });
  if (r.error) throw new Error(`format: ${command} could not run: ${r.error.message}`);
  if (r.status !== 0) process.exit(r.status ?? 1);
}

const files = process.argv.slice(2).map((f) => path.relative(ROOT, path.resolve(f)));
const scope = files.length ? byFormatter(files) : { prettier: [WHOLE_TREE], clangFormat: nativeFiles() };
run(path.join(ROOT, "node_modules/.bin/prettier"), scope.prettier.length ? ["--write", ...scope.prettier] : []);
run("clang-format", scope.clangFormat.length ? ["-i", ...scope.clangFormat] : []);
