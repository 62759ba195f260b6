#!/usr/bin/env bash
# Builds vab's one native module (native/shared-memory.cc) against the running Node's own headers:
# no download, no node-gyp. Without it vab still works: the dm-user transport falls back to moving
# every byte through the socket (see docs/kernel.md, "Transports"), and says so in its log.
set -euo pipefail
cd "$(dirname "$0")/.."
out=build/native/vab_shared_memory.node
src=native/shared-memory.cc
if [ -f "$out" ] && [ "$out" -nt "$src" ] && [ "$out" -nt "$0" ]; then exit 0; fi
include="$(node -p "require('path').resolve(process.execPath, '../../include/node')")"
if [ ! -f "$include/node_api.h" ]; then
  echo "build-native: no Node headers at $include; the shared dm-user transport is off (install Node from a tarball or package that ships include/node, then npm run build)" >&2
  exit 0
fi
mkdir -p build/native
if ! "${CXX:-g++}" -std=c++17 -O2 -Wall -Wextra -Werror -fPIC -shared -fvisibility=hidden \
  -DNAPI_VERSION=8 -DNODE_GYP_MODULE_NAME=vab_shared_memory -I"$include" "$src" -o "$out.tmp"; then
  rm -f "$out.tmp"
  echo "build-native: compiling $src failed; the shared dm-user transport is off (install g++, then npm run build)" >&2
  exit 0
fi
mv "$out.tmp" "$out"
