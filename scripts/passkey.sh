#!/usr/bin/env bash
# The passkey retrieval recipe (configs/passkey.yaml): data, training, and evaluation on documents
# made with another seed, so none of them was seen in training.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-deps.sh
scripts/build.sh
loom=build/loom
mkdir -p runs/data
[ -f runs/data/passkey-short.h5 ] ||
  $loom data synth --task passkey --out runs/data/passkey-short.h5 --docs 8000 --min-len 128 --max-len 512 --seed 21
[ -f runs/data/passkey-heldout.h5 ] ||
  $loom data synth --task passkey --out runs/data/passkey-heldout.h5 --docs 300 --min-len 128 --max-len 512 --seed 99
$loom train --config configs/passkey.yaml --resume auto
$loom eval --checkpoint runs/passkey --data runs/data/passkey-heldout.h5 --json runs/passkey/eval.json
$loom summary runs/passkey
