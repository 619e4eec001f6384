#!/usr/bin/env bash
# Quick start, command 2: set-up + build + every test through ctest.
# Extra arguments go to ctest, e.g. scripts/test.sh -L unit  or  scripts/test.sh -R Config
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-deps.sh
scripts/build.sh
cd build
ctest --output-on-failure -j "${LOOM_TEST_JOBS:-2}" "$@"
