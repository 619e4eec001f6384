#!/usr/bin/env bash
# The passkey retrieval recipe, in three stages each from the last one's weights: copying random
# strings (configs/passkey-copy.yaml, the induction warm-up), passkey documents of 128-512 bytes
# (configs/passkey-short.yaml), then of 128-4096 bytes (configs/passkey.yaml); then evaluation on
# documents made with another seed, so none of them was seen in training.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-deps.sh
scripts/build.sh
loom=build/loom
mkdir -p runs/data
[ -f runs/data/copy.h5 ] ||
  $loom data synth --task copy --out runs/data/copy.h5 --docs 12000 --min-len 32 --max-len 96 --seed 3
[ -f runs/data/passkey-short.h5 ] ||
  $loom data synth --task passkey --out runs/data/passkey-short.h5 --docs 8000 --min-len 128 --max-len 512 --seed 21
[ -f runs/data/passkey.h5 ] ||
  $loom data synth --task passkey --out runs/data/passkey.h5 --docs 6000 --min-len 128 --max-len 4096 --seed 22
[ -f runs/data/passkey-heldout.h5 ] ||
  $loom data synth --task passkey --out runs/data/passkey-heldout.h5 --docs 300 --min-len 128 --max-len 4096 --seed 99
start=$(date +%s)
for stage in passkey-copy passkey-short passkey; do
  echo "stage: configs/$stage.yaml"
  $loom train --config configs/$stage.yaml --resume auto
done
echo "training took $(( $(date +%s) - start )) s"
$loom eval --checkpoint runs/passkey --data runs/data/passkey-heldout.h5 --max-docs 300 --json runs/passkey/eval.json
$loom summary runs/passkey
