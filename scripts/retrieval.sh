#!/usr/bin/env bash
# Retrieval past the window: LaCT's fast weights must carry what its window cannot. Trains, on the
# same data and number of steps, a full-attention model (configs/retrieval.yaml), a LaCT model whose
# 16-token window is far shorter than the documents (configs/retrieval-lact.yaml), and the same LaCT
# model with chunks longer than any document, so its fast weights never update (window attention
# alone, the control); then scores all three on held-out documents and prints their retrieval
# accuracy side by side. --full-steps M also trains full attention for M steps (runs/retrieval-full-M),
# e.g. three times the steps for about LaCT's wall time.
#   scripts/retrieval.sh [--steps N] [--full-steps M]
set -euo pipefail
cd "$(dirname "$0")/.."
steps=600
full_steps=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --steps) steps="$2"; shift 2 ;;
    --full-steps) full_steps="$2"; shift 2 ;;
    *) echo "usage: scripts/retrieval.sh [--steps N] [--full-steps M]" >&2; exit 2 ;;
  esac
done
scripts/setup-deps.sh
scripts/build.sh
loom=build/loom
mkdir -p runs/data
synth() { $loom data synth --task passkey --style marker --key-digits 2 --min-len 256 --max-len 768 "$@"; }
[ -f runs/data/retrieval.h5 ] || synth --out runs/data/retrieval.h5 --docs 6000 --seed 31
[ -f runs/data/retrieval-heldout.h5 ] || synth --out runs/data/retrieval-heldout.h5 --docs 300 --seed 99

train() {  # run dir, steps, config, extra --set options
  local dir=$1 n=$2 config=$3; shift 3
  $loom train --config "$config" --set run.dir="$dir" --set train.steps="$n" "$@" --resume auto
  $loom eval --checkpoint "$dir" --data runs/data/retrieval-heldout.h5 --max-docs 300 --json "$dir/heldout.json" > "$dir/heldout.txt"
}
runs=(full lact window)
train runs/retrieval-full "$steps" configs/retrieval.yaml
train runs/retrieval-lact "$steps" configs/retrieval-lact.yaml
train runs/retrieval-window "$steps" configs/retrieval-lact.yaml --set model.lact.chunk=4096
if [[ -n "$full_steps" ]]; then
  train "runs/retrieval-full-$full_steps" "$full_steps" configs/retrieval.yaml
  runs+=("full-$full_steps")
fi

echo
echo "held-out retrieval (300 documents of 256-768 bytes, 2-digit keys; chance 1/90):"
for run in "${runs[@]}"; do
  printf '%-10s %s\n' "$run" "$(grep -m1 'retrieval accuracy' runs/retrieval-$run/heldout.txt || true)"
done
