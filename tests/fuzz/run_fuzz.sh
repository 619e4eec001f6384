#!/usr/bin/env bash
# Builds the reader fuzz target with clang, AddressSanitizer and UBSan, checks the seed files and
# hand-made corrupt files under the sanitizers, then fuzzes for a short while (LOOM_FUZZ_SECONDS,
# default 60). Skips (exit 77) where clang or libFuzzer is missing.
set -euo pipefail
build=$1
here=$(cd "$(dirname "$0")" && pwd)
if ! command -v clang++ >/dev/null || ! echo 'extern "C" int LLVMFuzzerTestOneInput(const char*, unsigned long){return 0;}' |
     clang++ -x c++ -fsanitize=fuzzer - -o /dev/null 2>/dev/null; then
  echo "SKIPPED: clang++ with libFuzzer is not installed (Debian: clang libclang-rt-14-dev)"
  exit 77
fi
out=$build/fuzz
cmake -S "$here" -B "$out" -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$out" -j2 >/dev/null
corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
"$out/reader_fuzz" --write-seeds "$corpus"
# Hand-made damage: truncations of each seed at every length up to 64 bytes, and a few cut later.
for seed in "$corpus"/seed.*; do
  size=$(stat -c %s "$seed")
  for n in $(seq 0 64) $((size / 2)) $((size - 1)); do head -c "$n" "$seed" > "$corpus/cut-$n-$(basename "$seed")"; done
done
"$out/reader_fuzz" -runs=0 "$corpus" 2>&1 | tail -1
"$out/reader_fuzz" -max_total_time="${LOOM_FUZZ_SECONDS:-60}" -max_len=4096 "$corpus" 2>&1 | grep -E "^#[0-9]+ *DONE|Done" | tail -2
