#!/usr/bin/env bash
# Prepares, in this checkout, what a run on a bare GPU machine needs beside the tracked tree, all
# of it git-ignored and copied along with the checkout (bench/README.md, "GPU comparison"):
#   .device/node.tar.xz          this machine's node, stripped (the GPU machine has no node)
#   .device/node_modules.tar.xz  node_modules without typescript and @types (tests and benches
#                                run through tsx; the native build needs cmake-js + node-api headers)
#   bench/vendor/sparsify/       EleutherAI sparsify's source, exported from a fetched snapshot:
#                                SPARSIFY_GIT_DIR=<a git dir of EleutherAI/sparsify>; kept if
#                                already there
# Then prints the size of what is copied along (kept under 64 MiB).
#   scripts/device-pack.sh
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .device

if [ ! -d node_modules/tsx ] || [ ! -d node_modules/cmake-js ]; then
  echo "device-pack: node_modules is incomplete: run npm install first" >&2; exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin"
node_bin=$(command -v node)
# Stripping drops node's debug info (99 MB -> 86 MB; xz then ~22 MB).
strip -o "$tmp/bin/node" "$node_bin" 2>/dev/null || cp "$node_bin" "$tmp/bin/node"
echo "device-pack: node $(node --version) -> .device/node.tar.xz"
tar -C "$tmp" -cf - bin/node | xz -T0 -6 > .device/node.tar.xz
echo "device-pack: node_modules -> .device/node_modules.tar.xz"
tar --exclude=node_modules/typescript --exclude=node_modules/@types --exclude='node_modules/.cache' \
  -cf - node_modules | xz -T0 -6 > .device/node_modules.tar.xz

if [ -n "${SPARSIFY_GIT_DIR:-}" ]; then
  rm -rf bench/vendor/sparsify && mkdir -p bench/vendor/sparsify
  git --git-dir="$SPARSIFY_GIT_DIR" archive HEAD | tar -x -C bench/vendor/sparsify
  git --git-dir="$SPARSIFY_GIT_DIR" rev-parse HEAD > bench/vendor/sparsify/COMMIT
  echo "device-pack: sparsify $(cat bench/vendor/sparsify/COMMIT) -> bench/vendor/sparsify"
elif [ ! -f bench/vendor/sparsify/sparsify/sparse_coder.py ]; then
  echo "device-pack: WARNING bench/vendor/sparsify is missing (set SPARSIFY_GIT_DIR): the comparison will be skipped" >&2
fi

for p in .device bench/vendor; do
  git check-ignore -q "$p" || { echo "device-pack: $p is not git-ignored: it would travel uncarried" >&2; exit 1; }
done
tree=$(git ls-files -co --exclude-standard -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
carried=$(du -scb .device bench/vendor | tail -1 | cut -f1)
total=$(( tree + carried ))
echo "device-pack: tree $(( tree / 1048576 )) MiB + carried $(( carried / 1048576 )) MiB = $(( total / 1048576 )) MiB (limit 64 MiB)"
if [ "$total" -gt $(( 64 * 1048576 )) ]; then echo "device-pack: over the device tool's 64 MiB limit" >&2; exit 1; fi
echo 'device-pack: run: {command: "bash scripts/gpu-check.sh", carry: [".device", "bench/vendor"], timeout_s: 600}'
