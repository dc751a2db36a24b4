"use strict";
// Locates a libtorch to build against, in the documented order:
// LIBTORCH, Torch_DIR / CMAKE_PREFIX_PATH, the torch of python3, then the system.
const fs = require("fs");
const path = require("path");
const { spawnSync } = require("child_process");

/** The folder holding TorchConfig.cmake below a prefix, or null. */
function torchConfigDir(prefix) {
  if (!prefix) return null;
  const candidates = [prefix, path.join(prefix, "share/cmake/Torch"), path.join(prefix, "lib/cmake/Torch"), path.join(prefix, "Torch")];
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
 * Why LIBTORCH names no libtorch, and the folder it most likely should name: libtorch-*.zip
 * unpacks to a libtorch/ folder, so LIBTORCH is often set to the folder that holds it.
 */
function badLibtorchMessage(value) {
  const expected =
    "an unpacked libtorch distribution (the libtorch/ folder of libtorch-*.zip, which holds lib/, include/ and share/cmake/Torch/TorchConfig.cmake)";
  if (!fs.existsSync(value)) return `LIBTORCH=${value} does not exist: set it to ${expected}`;
  const inner = path.join(value, "libtorch");
  if (torchConfigDir(inner)) return `LIBTORCH=${value} holds no share/cmake/Torch/TorchConfig.cmake, but ${inner} does: set LIBTORCH=${inner}`;
  return `LIBTORCH=${value} holds no share/cmake/Torch/TorchConfig.cmake: set it to ${expected}`;
}

/**
 * The first rules of findLibtorch, those that only read environment variables (LIBTORCH,
 * Torch_DIR / TORCH_DIR, CMAKE_PREFIX_PATH): {torchDir, source}, or null. Cheap: no python3.
 */
function libtorchNamedByEnv(env = process.env) {
  if (env.LIBTORCH) {
    const dir = torchConfigDir(env.LIBTORCH);
    if (!dir) throw new Error(badLibtorchMessage(env.LIBTORCH));
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
  return null;
}

/**
 * Returns {torchDir, source} for the first libtorch found, or null.
 * `source` says which rule found it, for the build log.
 */
function findLibtorch(env = process.env) {
  const named = libtorchNamedByEnv(env);
  if (named) return named;
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

function readIfExists(file) {
  return fs.existsSync(file) ? fs.readFileSync(file, "utf8") : null;
}

/** TORCH_INSTALL_PREFIX as TorchConfig.cmake computes it (relative to its own folder). */
function installPrefix(torchDir, config) {
  if (process.env.TORCH_INSTALL_PREFIX) return process.env.TORCH_INSTALL_PREFIX;
  const m = /get_filename_component\(TORCH_INSTALL_PREFIX\s+"\$\{CMAKE_CURRENT_LIST_DIR\}\/([./]*)"/.exec(config || "");
  return path.resolve(torchDir, m ? m[1] : "../../..");
}

/** The folder holding libtorch.so: <prefix>/lib for distributions, the multiarch folder on Debian. */
function libraryDir(torchDir, prefix) {
  const candidates = [path.join(prefix, "lib"), path.resolve(torchDir, "../.."), path.resolve(torchDir, "../../../lib")];
  const hasTorch = (dir) => fs.existsSync(dir) && fs.readdirSync(dir).some((n) => /^libtorch\.so(\.|$)/.test(n));
  return candidates.find(hasTorch) || candidates[0];
}

/**
 * The CUDA version a libtorch was built for ("12.1"), null for CPU builds, or "unknown" when
 * it has CUDA libraries but records no version. Python's torch says it in torch/version.py;
 * an unpacked libtorch distribution in its build-version file ("2.1.0+cu121").
 */
function cudaVersionOf(prefix, libDir) {
  const hasCudaLib = fs.existsSync(path.join(libDir, "libtorch_cuda.so"));
  const versionPy = readIfExists(path.join(prefix, "version.py"));
  if (versionPy) {
    const m = /^cuda(?:\s*:[^=]*)?\s*=\s*['"]([\d.]+)['"]/m.exec(versionPy);
    if (m) return m[1];
    if (!hasCudaLib) return null;
  }
  const buildVersion = readIfExists(path.join(prefix, "build-version"));
  const cu = buildVersion && /\+cu(\d+)(\d)\b/.exec(buildVersion);
  if (cu) return `${cu[1]}.${cu[2]}`;
  return hasCudaLib ? "unknown" : null;
}

/**
 * What a libtorch is, read from its CMake config and files (no compiler, no Python):
 * version, CUDA flavour, the _GLIBCXX_USE_CXX11_ABI value it was built with, and its folders.
 * The ABI comes from the same TORCH_CXX_FLAGS line that CMake builds use.
 */
function describeLibtorch(torchDir) {
  const config = readIfExists(path.join(torchDir, "TorchConfig.cmake")) || "";
  let version = "unknown";
  const versionConfig = readIfExists(path.join(torchDir, "TorchConfigVersion.cmake"));
  const vm = versionConfig && /PACKAGE_VERSION\s+"([^"]+)"/.exec(versionConfig);
  if (vm) version = vm[1];
  const prefix = installPrefix(torchDir, config);
  const libDir = libraryDir(torchDir, prefix);
  const cudaVersion = cudaVersionOf(prefix, libDir);
  const abi = /_GLIBCXX_USE_CXX11_ABI=(\d)/.exec(config);
  const includeDirs = [path.join(prefix, "include"), path.join(prefix, "include/torch/csrc/api/include")];
  return {
    version,
    cuda: cudaVersion !== null,
    cudaVersion,
    // cpu, cu121 (CUDA 12.1), or cuda when the version is not recorded.
    variant: cudaVersion === null ? "cpu" : cudaVersion === "unknown" ? "cuda" : `cu${cudaVersion.replace(".", "")}`,
    // Linux configs of PyTorch <= 2.7 state it (0 for pip wheels before 2.7); those of 2.8 and
    // later state none, since only the C++11 ABI is built: 1 then, which CMakeLists.txt also defines.
    cxx11Abi: abi ? abi[1] === "1" : true,
    prefix,
    libDir,
    includeDirs,
  };
}

/**
 * The tag naming what an addon is linked against: torch<version>-<variant>-cxx11abi<0|1>,
 * dots in the version written as underscores (prebuild file names use dots between tags).
 */
function libtorchTag({ version, variant, cxx11Abi }) {
  return `torch${String(version).replace(/\+.*$/, "").replace(/\./g, "_")}-${variant}-cxx11abi${cxx11Abi ? 1 : 0}`;
}

module.exports = { findLibtorch, libtorchNamedByEnv, describeLibtorch, torchConfigDir, libtorchTag };
