#!/usr/bin/env node
"use strict";
// The Debian/Ubuntu packages a clone needs, each with the purpose it serves. The one list that
// scripts/setup.js installs from and .ci/run installs (all of it), so the two cannot drift apart.
//
//   node scripts/lib/system-packages.js [purpose...]   prints the names, space-separated
//                                                      (every purpose when none is named)

/**
 * Purposes:
 *  - libtorch: the libtorch the addon links against, with what makes it fast on Debian;
 *  - build:    the toolchain and headers of the native build;
 *  - compare:  the PyTorch that `npm test` and `npm run bench` compare torch-lora against;
 *  - lint:     the format check of native/ that `npm run lint` (and so `npm test`) runs;
 *  - interop:  the virtual environment of transformers and PEFT that test/interop/ compares
 *              against (scripts/lib/hf-reference.js).
 */
const PURPOSES = ["libtorch", "build", "compare", "lint", "interop"];

const SYSTEM_PACKAGES = [
  { name: "libtorch-dev", purpose: "libtorch", why: "libtorch's headers, libraries and CMake files" },
  { name: "libopenblas0-pthread", purpose: "libtorch", why: "without it Debian's libtorch runs matmuls on reference BLAS, 35x slower" },
  { name: "cmake", purpose: "build", why: "the cmake-js build of the addon" },
  { name: "g++", purpose: "build", why: "the C++17 compiler" },
  { name: "make", purpose: "build", why: "the node-gyp build (prebuilds, scripts/gpu-check.sh)" },
  { name: "ninja-build", purpose: "build", why: "the generator cmake-js prefers" },
  { name: "ccache", purpose: "build", why: "rebuilds of unchanged native files are cache hits" },
  { name: "libgloo-dev", purpose: "build", why: "gloo's headers, which libtorch's c10d headers include" },
  { name: "clang-format", purpose: "lint", why: "the format check of native/*.cc and *.h in npm run lint (.clang-format)" },
  { name: "python3-torch", purpose: "compare", why: "PyTorch for /usr/bin/python3: the reference of the tests' cross-checks and the benchmark's baseline" },
  { name: "python3-venv", purpose: "interop", why: "the virtual environment of transformers and PEFT that test/interop/ compares against" },
];

/** The names of the packages serving any of `purposes` (all purposes when none is given), in list order. */
function packagesFor(purposes = PURPOSES) {
  for (const p of purposes) {
    if (!PURPOSES.includes(p)) throw new Error(`system-packages: unknown purpose ${JSON.stringify(p)}: expected one of ${PURPOSES.join(", ")}`);
  }
  return SYSTEM_PACKAGES.filter((pkg) => purposes.includes(pkg.purpose)).map((pkg) => pkg.name);
}

module.exports = { PURPOSES, SYSTEM_PACKAGES, packagesFor };

if (require.main === module) {
  try {
    const asked = process.argv.slice(2);
    console.log(packagesFor(asked.length ? asked : PURPOSES).join(" "));
  } catch (err) {
    console.error(err.message);
    process.exit(2);
  }
}
