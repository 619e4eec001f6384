#!/usr/bin/env bash
# Retrieval past the window: LaCT's fast weights must carry what its window cannot. Trains, on the
# same data and number of steps, a full-attention model (configs/retrieval.yaml), a LaCT model whose
# 16-token window is far shorter than the documents (configs/retrieval-lact.yaml), and the same LaCT
# model with chunks longer than any document, so its fast weights never update (window attention
# alone, the control); then scores all three on held-out documents and prints their retrieval
# accuracy side by side.
#   scripts/retrieval.sh [--steps N]
set -euo pipefail
cd "$(dirname "$0")/.."
steps=600
[[ "${1:-}" == "--steps" ]] && steps="$2"
scripts/setup-deps.sh
scripts/build.sh
loom=build/loom
mkdir -p runs/data
synth() { $loom data synth --task passkey --style marker --key-digits 2 --min-len 256 --max-len 768 "$@"; }
[ -f runs/data/retrieval.h5 ] || synth --out runs/data/retrieval.h5 --docs 6000 --seed 31
[ -f runs/data/retrieval-heldout.h5 ] || synth --out runs/data/retrieval-heldout.h5 --docs 300 --seed 99

train() {  # run dir, config, extra --set options
  local dir=$1 config=$2; shift 2
  $loom train --config "$config" --set run.dir="$dir" --set train.steps="$steps" "$@" --resume auto
  $loom eval --checkpoint "$dir" --data runs/data/retrieval-heldout.h5 --max-docs 300 --json "$dir/heldout.json" > "$dir/heldout.txt"
}
train runs/retrieval-full configs/retrieval.yaml
train runs/retrieval-lact configs/retrieval-lact.yaml
train runs/retrieval-window configs/retrieval-lact.yaml --set model.lact.chunk=4096

echo
echo "held-out retrieval (300 documents of 256-768 bytes, 2-digit keys; chance 1/90):"
for run in full lact window; do
  printf '%-8s %s\n' "$run" "$(grep -m1 'retrieval accuracy' runs/retrieval-$run/heldout.txt || true)"
done
