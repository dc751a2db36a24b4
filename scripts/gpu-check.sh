#!/usr/bin/env bash
# GPU check: builds torch-lora against the CUDA libtorch of this machine's Python torch, runs the
# CUDA tests (test/cuda, plus test/lora on the same build) and a short GPU benchmark, within
# about 8 minutes. Made for a GPU machine with PyTorch but no Node installation:
#
#   scripts/gpu-check.sh [NODE]
#     NODE   node-vX.Y.Z-linux-x64.tar.xz (the official build) or an unpacked Node folder with
#            bin/node; default: $TORCH_LORA_NODE, else the node on PATH.
#   scripts/gpu-check.sh --rehearse [NODE]
#     the same steps on a machine without a GPU, against whatever libtorch Python has: the CUDA
#     tests run on the CPU (TORCH_LORA_CUDA_TESTS_DEVICE=cpu) and the benchmark small, so the
#     script, the build and the tests are known to work before the GPU run.
#   scripts/gpu-check.sh --bundle DIR
#     run where Node and node_modules exist: writes DIR/node.tar.xz (bin/node + include/node of
#     the running Node) and DIR/node_modules.tar.xz, the two things to carry to the GPU machine.
#
# Environment:
#   NODE_HEADERS      folder with include/node/common.gypi (default: the Node folder itself;
#                     the official tarball ships include/node)
#   NODE_MODULES_TAR  a tarball of node_modules, unpacked when ./node_modules is missing
#                     (there is no registry to install from on a closed GPU machine)
#   PYTHON            the Python with CUDA torch (default python3)
#   Torch_DIR         build against this TorchConfig.cmake folder instead of Python's torch
#   GPU_CHECK_BUILD   gyp (default: node-gyp + make + g++, needs no CUDA toolkit) or cmake
#                     (cmake-js; find_package(Torch) of a CUDA torch also wants the CUDA toolkit)
#   GPU_CHECK_OUT     folder for logs (default /tmp/torch-lora-gpu-check; not under build/,
#                     which node-gyp rebuild wipes)
#   GPU_CHECK_BUILD_TIMEOUT  seconds allowed for the build (default 300: ~1-2 min on 16 cores)
#   GPU_CHECK_BUDGET  seconds for the whole check (default 470, under 8 minutes); each step gets
#                     at most what is left of it
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
log() { printf '[gpu-check %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { printf '[gpu-check] error: %s\n' "$*" >&2; exit 1; }

# Unpacks a .tar.xz / .tar.gz into $2, with Python's tarfile when tar cannot read xz here.
untar() {
  mkdir -p "$2"
  if ! tar -xf "$1" -C "$2" 2>/dev/null; then
    "${PYTHON:-python3}" -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$1" "$2"
  fi
}

bundle() {
  local dir="$1" node_bin node_home stage
  command -v node >/dev/null || die "--bundle needs node on PATH"
  [[ -d node_modules ]] || die "--bundle needs ./node_modules (npm ci first)"
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  node_bin="$(readlink -f "$(command -v node)")"
  node_home="$(dirname "$(dirname "$node_bin")")"
  [[ -f "$node_home/include/node/common.gypi" ]] || die "no Node headers at $node_home/include/node"
  stage="$(mktemp -d)"
  mkdir -p "$stage/node/bin" "$stage/node/include"
  cp "$node_bin" "$stage/node/bin/node"
  cp -r "$node_home/include/node" "$stage/node/include/"
  tar -C "$stage" -cJf "$dir/node.tar.xz" node
  rm -rf "$stage"
  # The build, the tests and the benchmark need these packages, not the whole dev tree.
  tar -cJf "$dir/node_modules.tar.xz" --exclude='node_modules/.cache' node_modules
  ls -l "$dir"
}

if [[ "${1:-}" == "--bundle" ]]; then
  [[ -n "${2:-}" ]] || die "usage: $0 --bundle DIR"
  bundle "$2"
  exit 0
fi

REHEARSE=0
if [[ "${1:-}" == "--rehearse" ]]; then
  REHEARSE=1
  shift
fi

START=$SECONDS
DEADLINE=$(( START + ${GPU_CHECK_BUDGET:-470} ))
OUTDIR="${GPU_CHECK_OUT:-/tmp/torch-lora-gpu-check}"
BUILD_TIMEOUT="${GPU_CHECK_BUILD_TIMEOUT:-300}"

# The time a step may take: its own cap, or what is left of the budget if that is less.
step_limit() {
  local left=$(( DEADLINE - SECONDS ))
  (( left > 0 )) || die "out of time: the budget of ${GPU_CHECK_BUDGET:-470} s is spent"
  echo $(( left < $1 ? left : $1 ))
}
mkdir -p "$OUTDIR"
PYTHON="${PYTHON:-python3}"

# --- Node -------------------------------------------------------------------------------------
NODE_SRC="${1:-${TORCH_LORA_NODE:-}}"
if [[ -n "$NODE_SRC" ]]; then
  if [[ -f "$NODE_SRC" ]]; then
    NODE_HOME="$(mktemp -d /tmp/gpu-check-node.XXXXXX)"
    untar "$NODE_SRC" "$NODE_HOME"
    # The official tarball has one top folder (node-vX.Y.Z-linux-x64/); go into it.
    if [[ ! -x "$NODE_HOME/bin/node" ]]; then
      NODE_HOME="$(dirname "$(dirname "$(find "$NODE_HOME" -maxdepth 3 -path '*/bin/node' -type f | head -n1)")")"
    fi
  elif [[ -d "$NODE_SRC" ]]; then
    NODE_HOME="$(cd "$NODE_SRC" && pwd)"
  else
    die "NODE=$NODE_SRC is neither a tarball nor a folder"
  fi
  [[ -x "$NODE_HOME/bin/node" ]] || die "no bin/node in $NODE_SRC"
  export PATH="$NODE_HOME/bin:$PATH"
else
  command -v node >/dev/null || die "no node on PATH: pass a Node tarball or folder (see the header of $0)"
  NODE_HOME="$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")"
fi
NODE_HEADERS="${NODE_HEADERS:-$NODE_HOME}"
log "node $(node --version) from $NODE_HOME; headers from $NODE_HEADERS"

# --- JavaScript dependencies --------------------------------------------------------------------
if [[ ! -d node_modules ]]; then
  [[ -n "${NODE_MODULES_TAR:-}" ]] || die "./node_modules is missing: set NODE_MODULES_TAR (made by $0 --bundle DIR)"
  log "unpacking $NODE_MODULES_TAR"
  untar "$NODE_MODULES_TAR" "$ROOT"
fi
for pkg in jest ts-jest typescript node-addon-api node-gyp; do
  [[ -d "node_modules/$pkg" ]] || die "node_modules/$pkg is missing"
done

# --- libtorch from Python's torch -------------------------------------------------------------
# LIBTORCH would win over Torch_DIR in the build's own discovery (scripts/lib/find-libtorch.js).
if [[ -n "${LIBTORCH:-}" ]]; then
  log "ignoring LIBTORCH=$LIBTORCH: this check builds against $PYTHON's torch (set Torch_DIR to choose another)"
  unset LIBTORCH
fi
if [[ -z "${Torch_DIR:-}" ]]; then
  TORCH_PREFIX="$("$PYTHON" -c 'import torch; print(torch.utils.cmake_prefix_path)')" || die "$PYTHON cannot import torch"
  if [[ -f "$TORCH_PREFIX/Torch/TorchConfig.cmake" ]]; then
    export Torch_DIR="$TORCH_PREFIX/Torch"
  else
    # Distribution packages (Debian's python3-torch) keep the CMake files with libtorch-dev.
    Torch_DIR="$(node -e 'const r=require("./scripts/lib/find-libtorch").findLibtorch(); if (!r) process.exit(1); console.log(r.torchDir)')" \
      || die "$PYTHON's torch has no TorchConfig.cmake under $TORCH_PREFIX and no other libtorch was found"
    export Torch_DIR
    log "$PYTHON's torch has no TorchConfig.cmake under $TORCH_PREFIX; using $Torch_DIR"
  fi
fi
[[ -f "$Torch_DIR/TorchConfig.cmake" ]] || die "no TorchConfig.cmake in $Torch_DIR"
"$PYTHON" -c 'import torch; print("[gpu-check] python torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available(), "cxx11abi", torch.compiled_with_cxx11_abi())'
node -e 'const f=require("./scripts/lib/find-libtorch");const d=f.describeLibtorch(process.env.Torch_DIR);console.log("[gpu-check] libtorch", JSON.stringify(d), "tag", f.libtorchTag(d))'

# --- build ------------------------------------------------------------------------------------
BUILD="${GPU_CHECK_BUILD:-gyp}"
JOBS="$(nproc 2>/dev/null || echo 4)"
log "building with $BUILD on $JOBS cores"
if [[ -z "${CXX:-}" ]] && command -v ccache >/dev/null; then export CXX="ccache g++"; fi
case "$BUILD" in
  gyp)
    for tool in make g++ "$PYTHON"; do command -v "$tool" >/dev/null || die "$tool is needed for the node-gyp build"; done
    [[ -f "$NODE_HEADERS/include/node/common.gypi" ]] || die "no Node headers in $NODE_HEADERS (set NODE_HEADERS)"
    export npm_config_python; npm_config_python="$(command -v "$PYTHON")"
    timeout "$(step_limit "$BUILD_TIMEOUT")" node node_modules/node-gyp/bin/node-gyp.js rebuild --nodedir="$NODE_HEADERS" --jobs "$JOBS" >"$OUTDIR/build.log" 2>&1 \
      || { tail -n 40 "$OUTDIR/build.log"; die "node-gyp build failed (log: $OUTDIR/build.log)"; }
    ;;
  cmake)
    timeout "$(step_limit "$BUILD_TIMEOUT")" node -e 'const f=require("./scripts/lib/find-libtorch");require("./scripts/lib/build-native").buildNative(process.cwd(), f.findLibtorch(), {force: true})' \
      >"$OUTDIR/build.log" 2>&1 || { tail -n 40 "$OUTDIR/build.log"; die "cmake-js build failed (log: $OUTDIR/build.log)"; }
    ;;
  *) die "GPU_CHECK_BUILD must be gyp or cmake, not $BUILD" ;;
esac
log "built in $((SECONDS - START)) s"
INFO="$(node -p 'JSON.stringify(require("./build/Release/torch_lora.node").buildInfo())')"
log "buildInfo $INFO"
if (( REHEARSE )); then
  log "rehearsal: the CUDA tests run on the CPU"
  export TORCH_LORA_CUDA_TESTS_DEVICE=cpu
  BENCH_ARGS=(--device cpu --small)
else
  node -e 'const i=JSON.parse(process.argv[1]); if(!i.cudaAvailable){console.error("[gpu-check] the addon sees no GPU (built against a CPU libtorch, or no driver)");process.exit(1)}' "$INFO"
  BENCH_ARGS=()
fi

# tsc writes dist/ even when it reports type errors; the demo test and the benchmark need only lib/ and demo/.
timeout "$(step_limit 90)" node node_modules/typescript/bin/tsc -p tsconfig.build.json || log "tsc reported errors (dist/ written anyway)"

# --- tests ------------------------------------------------------------------------------------
log "CUDA tests"
set +e
timeout "$(step_limit 240)" node node_modules/jest/bin/jest.js --ci test/cuda test/lora 2>&1 | tee "$OUTDIR/tests.log"
TEST_STATUS=${PIPESTATUS[0]}
set -e
grep -q "\[cuda\] SKIPPED" "$OUTDIR/tests.log" && { log "CUDA tests were skipped although a GPU is visible"; TEST_STATUS=1; }

# --- benchmark --------------------------------------------------------------------------------
log "GPU benchmark"
BENCH_STATUS=0
timeout "$(step_limit 120)" node scripts/gpu-bench.js --python "$PYTHON" ${BENCH_ARGS[@]+"${BENCH_ARGS[@]}"} 2>&1 | tee "$OUTDIR/bench.log" || BENCH_STATUS=$?

log "done in $((SECONDS - START)) s: tests exit $TEST_STATUS, benchmark exit $BENCH_STATUS (logs in $OUTDIR)"
exit $(( TEST_STATUS != 0 || BENCH_STATUS != 0 ))
