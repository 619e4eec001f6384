#!/usr/bin/env bash
# Loom's GGUF export read by llama.cpp itself (not part of CI: building llama.cpp takes ~15 min on
# two cores). Trains a tiny byte-level model, exports it to GGUF (f32), and checks that llama.cpp
#   - loads the file and tokenizes text to Loom's ids (the UTF-8 bytes),
#   - computes the logits Loom computes for every position (relative error < 1e-4),
#   - generates from it (llama-simple).
# llama.cpp's source comes from the argument, or from the llama-cpp-python source package on PyPI.
#   scripts/interop.sh [LLAMA_CPP_SOURCE_DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$root/build/interop
mkdir -p "$work"
src=${1:-}
if [ -z "$src" ]; then
  if [ ! -d "$work/llama-cpp-python" ]; then
    pip download --no-deps --no-binary :all: -d "$work" llama-cpp-python >/dev/null
    mkdir -p "$work/llama-cpp-python" && tar xzf "$work"/llama_cpp_python-*.tar.gz -C "$work/llama-cpp-python" --strip-components 1
  fi
  src=$work/llama-cpp-python/vendor/llama.cpp
fi
bld=${LLAMA_CPP_BUILD:-$work/llama.cpp-build}  # an existing llama.cpp build folder may be reused
cmake -S "$src" -B "$bld" -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$bld" -j2 --target llama llama-simple >/dev/null
g++ -std=c++17 -O2 -I"$src/include" -I"$src/ggml/include" "$root/scripts/interop/llama_cpp_logits.cpp" \
  -L"$bld/bin" -lllama -lggml -lggml-base -Wl,-rpath,"$bld/bin" -o "$work/llama_cpp_logits"

venv=$work/venv
[ -x "$venv/bin/python" ] || { python3 -m venv "$venv" && "$venv/bin/pip" install -q numpy safetensors; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
loom=$root/build/loom
text="The pass key is 71432. Remember it."
"$loom" data synth --task passkey --out "$tmp/pk.h5" --docs 60 --min-len 200 --max-len 600 >/dev/null
"$loom" train --config "$root/configs/tiny.yaml" --set data.path="$tmp/pk.h5" --set run.dir="$tmp/run" \
  --set train.steps=20 --set log.progress=false >/dev/null
"$loom" export --checkpoint "$tmp/run" --format gguf --out "$tmp/model.gguf"
"$loom" eval --checkpoint "$tmp/run" --dump-logits "$tmp/loom.safetensors" --text "$text" >/dev/null
ids=$("$work/llama_cpp_logits" "$tmp/model.gguf" "$text" "$tmp/llama.f32" 2>"$tmp/llama.log")
"$venv/bin/python" - "$tmp/loom.safetensors" "$tmp/llama.f32" "$ids" "$text" <<'PY'
import json, sys
import numpy as np
from safetensors.numpy import load_file
loom = load_file(sys.argv[1])
ids = json.loads(sys.argv[3])
assert ids == list(sys.argv[4].encode("utf-8")), f"llama.cpp tokenized to {ids}"
assert ids == loom["tokens"].tolist()
theirs = np.fromfile(sys.argv[2], dtype=np.float32).reshape(len(ids), -1)[:, :loom["logits"].shape[1]]
error = np.abs(theirs - loom["logits"]).max() / np.abs(loom["logits"]).max()
print(f"llama.cpp: same {len(ids)} token ids as Loom; logits relative error {error:.2e}")
assert error < 1e-4
PY
"$bld/bin/llama-simple" -m "$tmp/model.gguf" -n 24 "$text" 2>/dev/null | tail -2
echo "llama.cpp loads, tokenizes, computes and generates from Loom's GGUF export"
