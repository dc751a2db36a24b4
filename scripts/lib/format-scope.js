"use strict";
// The files `npm run lint` checks the format of and `npm run format` rewrites: TypeScript and
// JavaScript for prettier (.prettierrc.json, .prettierignore), native/*.cc and *.h for clang-format
// (.clang-format). scripts/format-checked.json says whether the whole tree is checked yet.
const fs = require("fs");
const path = require("path");

const ROOT = path.resolve(__dirname, "../..");
const PRETTIER_EXTENSIONS = [".ts", ".js", ".mjs", ".cjs", ".json"];
const NATIVE = /^native\/[^/]+\.(cc|h)$/;
/** The prettier glob of the whole tree: code and JSON only (the prose of docs/ is left as written). */
const WHOLE_TREE = `**/*.{${PRETTIER_EXTENSIONS.map((e) => e.slice(1)).join(",")}}`;

/** Every native/*.cc and *.h, relative to the root. */
function nativeFiles(root = ROOT) {
  return fs
    .readdirSync(path.join(root, "native"))
    .filter((name) => /\.(cc|h)$/.test(name))
    .map((name) => `native/${name}`)
    .sort();
}

/** `files` (paths relative to the root) split by the formatter that owns them; others are dropped. */
function byFormatter(files) {
  return {
    prettier: files.filter((f) => PRETTIER_EXTENSIONS.includes(path.extname(f))),
    clangFormat: files.filter((f) => NATIVE.test(f)),
  };
}

/**
 * What the format check covers: {wholeTree, prettier, clangFormat}. With wholeTree, prettier
 * gets every TypeScript/JavaScript/JSON file (its ignore file leaves out builds and dependencies)
 * and clang-format every native file.
 */
function checkedScope(root = ROOT) {
  const config = JSON.parse(fs.readFileSync(path.join(root, "scripts/format-checked.json"), "utf8"));
  if (config.wholeTree) return { wholeTree: true, prettier: [WHOLE_TREE], clangFormat: nativeFiles(root) };
  const missing = config.files.filter((f) => !fs.existsSync(path.join(root, f)));
  if (missing.length) throw new Error(`scripts/format-checked.json names files that do not exist: ${missing.join(", ")}`);
  return { wholeTree: false, ...byFormatter(config.files) };
}

module.exports = { ROOT, WHOLE_TREE, byFormatter, checkedScope, nativeFiles };
