#!/usr/bin/env bash
# Configures (once) and builds Loom into build/. Extra arguments go to the first cmake configure,
# e.g. scripts/build.sh -DLOOM_WITH_CUDA=OFF.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f build/CMakeCache.txt ]; then
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release "$@"
fi
cmake --build build -j "${LOOM_BUILD_JOBS:-2}"
