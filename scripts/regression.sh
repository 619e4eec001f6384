#!/usr/bin/env bash
# Regression runs: trains the small cases of tests/regression/cases/ and compares them with the
# goldens recorded for this hardware (docs/regression.md).
#
#   scripts/regression.sh                          every CPU case against tests/regression/golden/cpu/
#   scripts/regression.sh --cases full dp2         some of them
#   scripts/regression.sh --update                 rewrite the goldens deliberately, saying which changed
#   scripts/regression.sh --hardware h200          a GPU's cases and goldens (needs a CUDA build of loom)
#   scripts/regression.sh --dry-run --launcher srun --hardware h200   what each case would launch
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 tests/regression/regress.py "$@"
