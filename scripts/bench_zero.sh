#!/usr/bin/env bash
# Peak memory per rank and step time with the optimizer replicated (zero 0) or sharded over the
# replicas (ZeRO stages 1 and 2), at dp = 1, 2 and 4, on a model whose optimizer state dominates
# its memory (d_model 768, 6 layers, float32, short sequences).
#   scripts/bench_zero.sh [STEPS]      (default: 4; the first is not timed)
# Columns: rank 0's peak RSS; the AdamW moments it holds (what ZeRO divides: the run's `optimizer:`
# line; float32 parameters are their own masters), and 1/dp of the replicated figure beside it; the
# reduced gradients it keeps between backwards (the run's `optimizer:` line; zero 0: its buckets,
# which are the whole gradient); the median step time and its ratio to zero 0 at the same dp.
# dp = 4 runs 4 ranks on however many cores there are.
set -euo pipefail
cd "$(dirname "$0")/.."
steps="${1:-4}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
build/loom data synth --task passkey --out "$work/data.h5" --docs 200 --min-len 200 --max-len 600 --seed 5 >/dev/null

median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
printf "%3s %5s %10s %14s %12s %14s %9s %10s\n" dp zero peak_MB state_MB_held whole/dp_MB grads_MB_kept step_s vs_zero0
for dp in 1 2 4; do
  base_step=""
  for zero in 0 1 2; do
    run="$work/run-$dp-$zero"
    out=$(launch/loom-run -n "$dp" -- build/loom train --config configs/tiny.yaml --set data.path="$work/data.h5" \
      --set run.dir="$run" --set model.d_model=768 --set model.n_layers=6 --set model.n_heads=12 --set model.n_kv_heads=12 \
      --set model.max_seq_len=128 --set train.seq_len=128 --set train.tokens_per_step=512 --set train.steps="$steps" \
      --set train.dtype=float32 --set parallel.zero="$zero" --set checkpoint.interval=0 --set log.progress=false 2>&1) ||
      { echo "dp=$dp zero=$zero failed:"; echo "$out" | tail -5; continue; }
    peak=$(grep -o '"peak_mem_bytes":[0-9]*' "$run/metrics.jsonl" | cut -d: -f2 | sort -n | tail -1)
    step=$(tail -n +2 "$run/metrics.jsonl" | grep -o '"step_time_s":[0-9.e-]*' | cut -d: -f2 | median)
    if [[ $zero == 0 ]]; then
      # Replicated: float32 masters are the parameters themselves, so the state is the two moments.
      whole=$(echo "$out" | grep -o 'adamw on [0-9]* tensors ([0-9.]*M)' | grep -o '[0-9.]*M' | tr -d M)
      whole_mb=$(awk -v p="$whole" 'BEGIN {printf "%.1f", p * 2 * 4}')
      held="$whole_mb"
      whole_grads_mb=$(awk -v p="$whole" 'BEGIN {printf "%.1f", p * 4}')
      grads="$whole_grads_mb"
      base_step="$step"
    else
      held=$(echo "$out" | grep -o 'this rank holds [0-9.e+]* MB' | grep -o '[0-9.e+]*' | head -1 || true)
      grads=$(echo "$out" | sed -n 's/.*and keeps \([0-9.e+]*\) MB.*/\1/p' | head -1)
      # One replica: nothing to shard, replicated.
      [[ -n "$held" ]] || held="$whole_mb"
      [[ -n "$grads" ]] || grads="$whole_grads_mb"
    fi
    ideal=$(awk -v w="$whole_mb" -v z="$zero" -v d="$dp" 'BEGIN {printf "%.1f", z == 0 ? w : w / d}')
    printf "%3s %5s %10.0f %14.1f %12s %14.1f %9.3f %9.2fx\n" "$dp" "$zero" "$(awk -v b="$peak" 'BEGIN {print b / 1048576}')" \
      "$held" "$ideal" "$grads" "$step" "$(awk -v s="$step" -v b="$base_step" 'BEGIN {print s / b}')"
  done
done
