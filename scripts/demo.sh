#!/usr/bin/env bash
# Quick start, command 1: set-up + build + the main job: a small byte-level Llama learns multi-query
# associative recall, sequence parallel on 2 MPI ranks (TokenRing), in three stages (copying random
# strings, which forms the induction head retrieval is built on; recall in short documents; recall in
# documents up to the 2048-token training length); then its accuracy by distance, a generation that
# answers a query from far back in its prompt, and a summary with a plot of the run.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-deps.sh
scripts/build.sh
loom=build/loom

mkdir -p runs/data
[ -f runs/data/copy.h5 ] ||
  $loom data synth --task copy --out runs/data/copy.h5 --docs 12000 --min-len 32 --max-len 96 --seed 3
[ -f runs/data/recall-short.h5 ] ||
  $loom data synth --task recall --out runs/data/recall-short.h5 --docs 16000 --min-len 48 --max-len 96 --pairs 8 --seed 1
[ -f runs/data/recall.h5 ] ||
  $loom data synth --task recall --out runs/data/recall.h5 --docs 12000 --min-len 48 --max-len 2000 --pairs 8 --seed 2
$loom data inspect runs/data/recall.h5
echo
start=$(date +%s)
echo "stage 1: copying random strings, the induction warm-up (configs/demo-copy.yaml)"
launch/loom-run -n 2 -- $loom train --config configs/demo-copy.yaml --set run.overwrite=true
echo
echo "stage 2: recall in short documents, from stage 1's weights (configs/demo-short.yaml)"
launch/loom-run -n 2 -- $loom train --config configs/demo-short.yaml --set run.overwrite=true
echo
echo "stage 3: recall in documents up to 2048 tokens, from stage 2's weights (configs/demo.yaml)"
launch/loom-run -n 2 -- $loom train --config configs/demo.yaml --set run.overwrite=true
echo "training took $(( $(date +%s) - start )) s"
echo
$loom eval --checkpoint runs/demo --max-docs 300 --json runs/demo/eval.json
echo
# A prompt of 8 pairs, about 1,500 bytes of filler, then queries: the last asks for a key stated
# some 1,600 tokens earlier. One token is generated, the answer: the loss was on answers only, so
# what the model writes after one is untrained.
pairs="k3 w7 a1 m9 q5 z2 d8 h4 "
filler=""
while [ ${#filler} -lt 1500 ]; do filler+="The grass is green. Here we go. The sky is blue. "; done
echo "generation from the trained model (greedy, KV-cached); the pairs were: $pairs"
echo "prompt: \"$pairs${filler:0:40}... (${#filler} bytes of filler) ...z2 k3 q\""
echo "...$($loom generate --checkpoint runs/demo --max-new 1 --prompt "$pairs${filler}z2 k3 q" | tail -c 40)"
echo "(q was stated as q5, $(( ${#filler} + 10 )) bytes back)"
echo
$loom summary runs/demo --plot runs/demo/run.png
