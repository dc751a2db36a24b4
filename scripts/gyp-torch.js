#!/usr/bin/env node
"use strict";
// Prints libtorch build settings for binding.gyp, from the same discovery as the cmake-js build
// (scripts/lib/find-libtorch.js): LIBTORCH, Torch_DIR / CMAKE_PREFIX_PATH, python3's torch, system.
//   node scripts/gyp-torch.js include-dirs | libraries | ldflags | abi-define | built-with | napi-define [TORCH_DIR]
// napi-define honours TORCH_LORA_NAPI=stable (force NAPI_VERSION=8; see napiDefine below).
// Values are printed space-separated for gyp's <!@(...) expansion, so libtorch paths must not
// contain spaces. With TORCH_DIR (a folder holding TorchConfig.cmake) that libtorch is described
// instead of the one discovery finds: CMakeLists.txt passes its Torch_DIR, so both builds name
// the CUDA flavour from the libtorch's own files, never from whichever CUDA toolkit is installed.
const fs = require("fs");
const path = require("path");
const { findLibtorch, describeLibtorch } = require("./lib/find-libtorch");

/**
 * NAPI_EXPERIMENTAL when this Node's headers declare GC-time ("basic") finalizers, which let a
 * synchronous training loop free dropped tensors at each collection (see CMakeLists.txt);
 * NAPI_VERSION=8 otherwise.
 *
 * TORCH_LORA_NAPI=stable forces NAPI_VERSION=8 even where the headers offer more: such a build
 * imports no experimental symbol and loads on every Node with Node-API 8 (the prebuild script
 * makes one of each). TORCH_LORA_NAPI unset (or "auto") keeps the choice above.
 */
function napiDefine(env = process.env) {
  const mode = env.TORCH_LORA_NAPI || "auto";
  if (mode === "stable") return "NAPI_VERSION=8";
  if (mode !== "auto") throw new Error(`TORCH_LORA_NAPI=${mode} is not understood: use "stable" (NAPI_VERSION=8) or "auto"`);
  const header = path.resolve(process.execPath, "../../include/node/js_native_api.h");
  const experimental = fs.existsSync(header) && fs.readFileSync(header, "utf8").includes("NODE_API_EXPERIMENTAL_HAS_POST_FINALIZER");
  return experimental ? "NAPI_EXPERIMENTAL" : "NAPI_VERSION=8";
}

function main(what, torchDir) {
  if (what === "napi-define") return napiDefine();
  if (torchDir && !fs.existsSync(path.join(torchDir, "TorchConfig.cmake"))) {
    throw new Error(`${torchDir} holds no TorchConfig.cmake`);
  }
  const found = torchDir ? { torchDir } : findLibtorch();
  if (!found) {
    throw new Error("no libtorch found for the node-gyp build: set LIBTORCH=/path/to/libtorch, Torch_DIR, or install libtorch-dev (Debian) or torch (pip)");
  }
  const d = describeLibtorch(found.torchDir);
  const cudaLibs = d.cuda ? ["torch_cuda", "c10_cuda"] : [];
  switch (what) {
    case "include-dirs":
      return d.includeDirs.join(" ");
    case "libraries":
      return [`-L${d.libDir}`, "-ltorch", "-ltorch_cpu", "-lc10"].join(" ");
    case "ldflags":
      // libtorch_cuda is only reached through registration at load time: without
      // --no-as-needed the linker drops it and CUDA silently looks unavailable. Its own CUDA
      // dependencies (cudart, cublas, ...; in pip wheels the nvidia-* packages) and
      // libtorch_cuda_linalg (opened lazily) are found through libtorch_cuda's RPATH at load time.
      return [
        `-Wl,-rpath,${d.libDir}`,
        ...(cudaLibs.length ? ["-Wl,--push-state,--no-as-needed", ...cudaLibs.map((l) => `-l${l}`), "-Wl,--pop-state"] : []),
      ].join(" ");
    case "abi-define":
      return `_GLIBCXX_USE_CXX11_ABI=${d.cxx11Abi ? 1 : 0}`;
    case "built-with":
      // Same format as the cmake-js build's TORCH_LORA_BUILT_WITH: <version>-cpu or <version>-cuda<X.Y>.
      return `${d.version}-${d.cuda ? `cuda${d.cudaVersion === "unknown" ? "" : d.cudaVersion}` : "cpu"}`;
    default:
      throw new Error(`unknown query ${JSON.stringify(what)}: use include-dirs, libraries, ldflags, abi-define, built-with or napi-define`);
  }
}

try {
  process.stdout.write(main(process.argv[2], process.argv[3]) + "\n");
} catch (err) {
  console.error(`[torch-lora gyp] ${err.message}`);
  process.exit(1);
}
