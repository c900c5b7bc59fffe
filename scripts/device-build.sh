#!/usr/bin/env bash
# Builds the addon with plain CMake (no cmake-js, no network) against the libtorch scripts/libtorch.mjs finds: for a GPU machine
# that has CMake, nvcc and a CUDA torch but no Node toolchain. Needs a carried Node (bin/node and the N-API headers
# in include/node, as scripts/gpu-session.sh packs them) and node_modules with node-addon-api.
#   NODE_DIR=.gpu-session/node BUILD_DIR=build bash scripts/device-build.sh   (scripts/gpu-session.sh run does this)
set -euo pipefail
cd "$(dirname "$0")/.."
NODE_DIR=${NODE_DIR:-.gpu-session/node}
BUILD_DIR=${BUILD_DIR:-build}
export PATH="$(cd "$NODE_DIR/bin" && pwd):$PATH"
PREFIX=$(node scripts/libtorch.mjs --field prefix)  # LIBTORCH, python3's torch, or .venv
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$PREFIX" -DCMAKE_JS_INC="$(cd "$NODE_DIR/include/node" && pwd)"
cmake --build "$BUILD_DIR" -j"$(nproc)"
ls -la "$BUILD_DIR/Release/pigg.node"
