#!/usr/bin/env bash
# Peak memory per rank of one training step against sequence length, for sp = 1, 2 and 4, and the
# longest sequence that fits a memory cap: with sequence parallelism a rank holds 1/sp of every
# sequence, so the longest trainable sequence should grow about linearly with sp.
#   scripts/bench_memory.sh [--strategy full|seco] [CAP_MB] [LENGTHS...]
#                                                      (default: full; 600 MB; 2048 4096 8192 16384)
# --strategy seco backprops chunk by chunk (1,024-token chunks, each cut over the sp ranks): the
# two memory savers together.
# A small model (d_model 128, 2 layers, 4 heads of 32); float32; peak RSS of rank 0 (ranks hold
# equal shares under the zigzag layout). sp = 4 runs 4 ranks on however many cores there are.
set -euo pipefail
cd "$(dirname "$0")/.."
strategy=full
if [[ "${1:-}" == --strategy ]]; then strategy="$2"; shift 2; fi
[[ "$strategy" == full || "$strategy" == seco ]] || { echo "--strategy takes full or seco, not '$strategy'" >&2; exit 2; }
cap_mb="${1:-600}"
[[ $# -gt 0 ]] && shift
if [[ $# -gt 0 ]]; then lengths=("$@"); else lengths=(2048 4096 8192 16384); fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
build/loom data synth --task passkey --out "$work/long.h5" --docs 64 --min-len 4000 --max-len 16000 --seed 3 >/dev/null

printf "%8s" "tokens"
for sp in 1 2 4; do printf " %12s" "sp=$sp MB"; done
echo
declare -A longest
for length in "${lengths[@]}"; do
  printf "%8s" "$length"
  for sp in 1 2 4; do
    run="$work/run-$sp-$length"
    launch/loom-run -n "$sp" -- loom train --config configs/tiny.yaml --set data.path="$work/long.h5" --set run.dir="$run" \
      --set model.d_model=128 --set model.n_heads=4 --set model.n_kv_heads=4 --set model.max_seq_len="$length" \
      --set train.seq_len="$length" --set train.tokens_per_step="$length" --set train.steps=1 --set parallel.sp="$sp" \
      --set train.strategy="$strategy" --set train.chunk_size=1024 --set parallel.attention=token_ring --set eval.interval=0 --set log.progress=false >/dev/null 2>&1 ||
      { echo " (sp=$sp failed)"; continue; }
    bytes=$(head -1 "$run/metrics.jsonl" | grep -o '"peak_mem_bytes":[0-9]*' | cut -d: -f2)
    mb=$(( bytes / 1048576 ))
    printf " %12s" "$mb"
    (( mb <= cap_mb )) && longest[$sp]=$length
  done
  echo
done
for sp in 1 2 4; do echo "$strategy, sp=$sp: longest sequence within ${cap_mb} MB per rank: ${longest[$sp]:-none of those tried}"; done
