#!/usr/bin/env node
"use strict";
// Which c10d backends native/dist.cc can be compiled with, for both builds (CMakeLists.txt and
// binding.gyp):
//   node scripts/dist-backends.js defines | include-dirs | list [TORCH_DIR]
// A backend is compiled in only when everything it needs is here, so a libtorch without it still
// builds (and dist.isAvailable() says false at run time):
//   gloo: c10d's ProcessGroupGloo.hpp in the libtorch, gloo's own headers (Debian: libgloo-dev;
//         pip wheels and libtorch zips ship them) and ProcessGroupGloo in libtorch_cpu.
//   nccl: a CUDA libtorch, its ProcessGroupNCCL.hpp, ProcessGroupNCCL in libtorch_cuda, and the
//         nccl.h / cuda_runtime_api.h headers the c10d header includes (CUDA toolkit, or the
//         nvidia-* pip packages next to torch).
// Printed space-separated for gyp's <!@(...) expansion.
const fs = require("fs");
const path = require("path");
const { findLibtorch, describeLibtorch } = require("./lib/find-libtorch");

const C10D = "torch/csrc/distributed/c10d";

/** True when `file` contains the bytes of `text` (a symbol name in a shared library). */
function fileContains(file, text) {
  if (!fs.existsSync(file)) return false;
  return fs.readFileSync(file).includes(Buffer.from(text));
}

/** The first folder of `dirs` holding `header`, or null. */
function headerDir(dirs, header) {
  return dirs.find((d) => fs.existsSync(path.join(d, header))) || null;
}

/** Folders where CUDA and NCCL headers may live next to a CUDA libtorch. */
function cudaHeaderDirs(d) {
  const dirs = [];
  for (const v of ["CUDA_HOME", "CUDA_PATH", "CUDAToolkit_ROOT"]) if (process.env[v]) dirs.push(path.join(process.env[v], "include"));
  dirs.push("/usr/local/cuda/include");
  // pip wheels: site-packages/torch/lib -> site-packages/nvidia/<pkg>/include
  const nvidia = path.resolve(d.libDir, "../../nvidia");
  if (fs.existsSync(nvidia)) for (const pkg of fs.readdirSync(nvidia)) dirs.push(path.join(nvidia, pkg, "include"));
  return dirs;
}

/** { backends: string[], includeDirs: string[] } for the libtorch described by `d`. */
function detect(d) {
  const systemDirs = ["/usr/include", "/usr/local/include"];
  const backends = [];
  const includeDirs = [];
  const gloo =
    fs.existsSync(path.join(d.prefix, "include", C10D, "ProcessGroupGloo.hpp")) &&
    headerDir([...d.includeDirs, ...systemDirs], "gloo/algorithm.h") !== null &&
    fileContains(path.join(d.libDir, "libtorch_cpu.so"), "ProcessGroupGloo");
  if (gloo) backends.push("gloo");
  if (
    d.cuda &&
    fs.existsSync(path.join(d.prefix, "include", C10D, "ProcessGroupNCCL.hpp")) &&
    fileContains(path.join(d.libDir, "libtorch_cuda.so"), "ProcessGroupNCCL")
  ) {
    const dirs = [...d.includeDirs, ...cudaHeaderDirs(d), ...systemDirs];
    const needed = ["nccl.h", "cuda_runtime_api.h"].map((h) => headerDir(dirs, h));
    if (needed.every((dir) => dir !== null)) {
      backends.push("nccl");
      for (const dir of needed) if (!d.includeDirs.includes(dir) && !systemDirs.includes(dir) && !includeDirs.includes(dir)) includeDirs.push(dir);
    }
  }
  return { backends, includeDirs };
}

function main(what, torchDir) {
  const found = torchDir ? { torchDir } : findLibtorch();
  const { backends, includeDirs } = found ? detect(describeLibtorch(found.torchDir)) : { backends: [], includeDirs: [] };
  switch (what) {
    case "defines":
      return backends.map((b) => `TORCH_LORA_DIST_${b.toUpperCase()}`).join(" ");
    case "include-dirs":
      return includeDirs.join(" ");
    case "list":
      return backends.join(" ");
    default:
      throw new Error(`unknown query ${JSON.stringify(what)}: use defines, include-dirs or list`);
  }
}

if (require.main === module) {
  try {
    process.stdout.write(main(process.argv[2], process.argv[3]) + "\n");
  } catch (err) {
    process.stderr.write(`dist-backends: ${err.message}\n`);
    process.exit(1);
  }
}

module.exports = { detect };
