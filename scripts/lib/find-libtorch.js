"use strict";
// Locates a libtorch to build against, in the documented order:
// LIBTORCH, Torch_DIR / CMAKE_PREFIX_PATH, the torch of python3, then the system.
const fs = require("fs");
const path = require("path");
const { spawnSync } = require("child_process");

/** The folder holding TorchConfig.cmake below a prefix, or null. */
function torchConfigDir(prefix) {
  if (!prefix) return null;
  const candidates = [
    prefix,
    path.join(prefix, "share/cmake/Torch"),
    path.join(prefix, "lib/cmake/Torch"),
    path.join(prefix, "Torch"),
  ];
  return candidates.find((dir) => fs.existsSync(path.join(dir, "TorchConfig.cmake"))) || null;
}

function fromPython(python) {
  const r = spawnSync(python, ["-c", "import torch,sys;sys.stdout.write(torch.utils.cmake_prefix_path)"], {
    encoding: "utf8",
    timeout: 60000,
  });
  if (r.status !== 0 || !r.stdout) return null;
  return torchConfigDir(r.stdout.trim());
}

const SYSTEM_PREFIXES = [
  "/usr/lib/x86_64-linux-gnu/cmake/Torch",
  "/usr/lib/aarch64-linux-gnu/cmake/Torch",
  "/usr/share/cmake/Torch",
  "/usr/local/share/cmake/Torch",
  "/usr/local/libtorch",
  "/opt/libtorch",
];

/**
 * Returns {torchDir, source} for the first libtorch found, or null.
 * `source` says which rule found it, for the build log.
 */
function findLibtorch(env = process.env) {
  if (env.LIBTORCH) {
    const dir = torchConfigDir(env.LIBTORCH);
    if (!dir) throw new Error(`LIBTORCH=${env.LIBTORCH} holds no share/cmake/Torch/TorchConfig.cmake: point it at an unpacked libtorch distribution`);
    return { torchDir: dir, source: "LIBTORCH" };
  }
  for (const name of ["Torch_DIR", "TORCH_DIR"]) {
    const dir = torchConfigDir(env[name]);
    if (dir) return { torchDir: dir, source: name };
  }
  for (const prefix of (env.CMAKE_PREFIX_PATH || "").split(path.delimiter).filter(Boolean)) {
    const dir = torchConfigDir(prefix);
    if (dir) return { torchDir: dir, source: "CMAKE_PREFIX_PATH" };
  }
  for (const python of ["python3", "/usr/bin/python3"]) {
    const dir = fromPython(python);
    if (dir) return { torchDir: dir, source: `${python} (torch.utils.cmake_prefix_path)` };
  }
  for (const prefix of SYSTEM_PREFIXES) {
    const dir = torchConfigDir(prefix);
    if (dir) return { torchDir: dir, source: "system" };
  }
  return null;
}

/** Version and CUDA flag of the libtorch at torchDir, read from its headers/config. */
function describeLibtorch(torchDir) {
  let version = "unknown";
  const versionFile = path.join(torchDir, "TorchConfigVersion.cmake");
  if (fs.existsSync(versionFile)) {
    const m = /PACKAGE_VERSION\s+"([^"]+)"/.exec(fs.readFileSync(versionFile, "utf8"));
    if (m) version = m[1];
  }
  // A CUDA build ships libtorch_cuda next to libtorch, three levels above share/cmake/Torch.
  const libDirs = [path.resolve(torchDir, "../../../lib"), path.resolve(torchDir, "../..")];
  const cuda = libDirs.some((dir) => fs.existsSync(path.join(dir, "libtorch_cuda.so")));
  return { version, cuda: Boolean(cuda) };
}

module.exports = { findLibtorch, describeLibtorch, torchConfigDir };
