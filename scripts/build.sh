#!/usr/bin/env bash
# Configures (once) and builds Loom into build/. Extra arguments go to the first cmake configure,
# e.g. scripts/build.sh -DLOOM_WITH_CUDA=OFF.
#   scripts/build.sh --no-pch   compiles everything into build-nopch/ without the precompiled header
#                               and without optimisation: a check that every file includes what it
#                               uses (CI runs it), not a build to run.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=build
args=(-DCMAKE_BUILD_TYPE=Release)
if [ "${1:-}" = --no-pch ]; then
  shift
  dir=build-nopch
  args=(-DCMAKE_BUILD_TYPE=None -DCMAKE_CXX_FLAGS=-O0 -DCMAKE_DISABLE_PRECOMPILE_HEADERS=ON)
fi
if [ ! -f "$dir/CMakeCache.txt" ]; then
  cmake -S . -B "$dir" "${args[@]}" "$@"
fi
cmake --build "$dir" -j "${LOOM_BUILD_JOBS:-2}"
