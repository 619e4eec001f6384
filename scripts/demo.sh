#!/usr/bin/env bash
# Quick start, command 1: set-up + build + the main job (configs/demo.yaml) on synthetic passkey
# data, trained data-parallel on 2 MPI ranks, then a summary of what it produced.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-deps.sh
scripts/build.sh
loom=build/loom

data=runs/data/passkey-demo.h5
mkdir -p runs/data
[ -f "$data" ] || $loom data synth --task passkey --out "$data" --docs 2000 --min-len 256 --max-len 2048 --seed 1
$loom data inspect "$data"
echo
launch/loom-run -n 2 -- $loom train --config configs/demo.yaml --set run.overwrite=true
echo
$loom eval --checkpoint runs/demo --json runs/demo/eval.json
echo
echo "generation from the trained model (greedy, KV-cached):"
$loom generate --checkpoint runs/demo --max-new 60 \
  --prompt "The grass is green. The pass key is 31415. Remember it. 31415 is the pass key. The sky is"
echo
$loom summary runs/demo
