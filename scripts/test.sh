#!/usr/bin/env bash
# Quick start, command 2: set-up + build + every test through ctest.
# Extra arguments go to ctest, e.g. scripts/test.sh -L unit  or  scripts/test.sh -R Config
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-deps.sh
scripts/build.sh
cd build
rc=0
ctest --output-on-failure -j "${LOOM_TEST_JOBS:-2}" "$@" || rc=$?
# ctest lists a skipped test without its reason: print each reason once with the tests it skipped
# (a script's "SKIPPED: why" line, or the line after GoogleTest's "file:line: Skipped").
awk '/^[0-9]+\/[0-9]+ Test: /{name=$3}
     /^SKIPPED: /{why=substr($0, 10)} prev ~ /: Skipped$/{why=$0}
     why != "" && !seen[why, name]++ {tests[why] = tests[why] (tests[why] == "" ? "" : ", ") name; n[why]++}
     {why=""}
     {prev=$0}
     END {for (w in n) printf "skipped (%d): %s [%s]\n", n[w], w, (n[w] > 3 ? "e.g. " substr(tests[w], 1, 60) "..." : tests[w])}' \
  Testing/Temporary/LastTest.log 2>/dev/null || true
exit $rc
