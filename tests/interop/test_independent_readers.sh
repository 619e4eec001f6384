#!/usr/bin/env bash
# Loom's exports read by independent readers (the `safetensors`, `gguf` and `tokenizers` Python
# packages, installed into a virtualenv under the build dir). Skips (exit 77) when the virtualenv
# cannot be made or PyPI cannot be reached.
set -euo pipefail
build=$1
here=$(cd "$(dirname "$0")" && pwd)
venv=$build/interop-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import safetensors, gguf, tokenizers, numpy" 2>/dev/null; then
  rm -rf "$venv"
  if ! python3 -m venv "$venv" >/dev/null 2>&1 ||
     ! timeout 300 "$venv/bin/pip" install -q safetensors numpy gguf tokenizers >/dev/null 2>&1; then
    echo "SKIPPED: cannot make a virtualenv with safetensors, numpy, gguf and tokenizers (no python3-venv, or PyPI unreachable)"
    rm -rf "$venv"
    exit 77
  fi
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
loom=$build/loom
"$loom" data synth --task passkey --out "$work/pk.h5" --docs 40 --min-len 200 --max-len 500 >/dev/null
"$loom" train --config "$here/../../configs/tiny.yaml" --set data.path="$work/pk.h5" --set run.dir="$work/run" \
  --set train.steps=2 --set log.progress=false >/dev/null
"$loom" export --checkpoint "$work/run" --format hf --out "$work/hf"
"$loom" export --checkpoint "$work/run" --format hf --out "$work/hf-f16" --dtype f16 --shard-mb 0.1
"$loom" export --checkpoint "$work/run" --format gguf --out "$work/model.gguf"
"$venv/bin/python" "$here/check_exports.py" "$work/run/checkpoints/step-2" "$work/hf" "$work/hf-f16" "$work/model.gguf"
