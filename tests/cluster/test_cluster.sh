#!/usr/bin/env bash
# Label `cluster`: Loom across an emulated 2-node cluster (scripts/cluster/up.sh, 2 ranks per node,
# 1 Gbit/s NICs): every collective test with node-local groups of two, then data-parallel training
# whose placement table shows two hosts. Skips (exit 77) where root or network namespaces are missing.
#   tests/cluster/test_cluster.sh BUILD_DIR
set -euo pipefail
build="$(cd "$1" && pwd)"
source_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

# Creating a namespace can work where entering one does not (a chroot): probe both.
if [[ "$(id -u)" != 0 ]] || ! { ip netns add loom-probe && ip netns exec loom-probe true; } 2>/dev/null; then
  ip netns delete loom-probe 2>/dev/null
  echo "SKIP: the cluster tests need root and network namespaces (ip netns add / exec)"
  exit 77
fi
ip netns delete loom-probe

work="$(mktemp -d)"
cluster="$work/cluster"
trap '"$source_dir/scripts/cluster/down.sh" --dir "$cluster"; rm -rf "$work"' EXIT
"$source_dir/scripts/cluster/up.sh" --nodes 2 --ranks-per-node 2 --nic-gbit 1 --dir "$cluster"
run() { "$source_dir/launch/loom-run" -n 4 --cluster "$cluster" "$@"; }

echo "== collectives, mesh and gradient reduction across two nodes"
LOOM_TEST_RANKS_PER_NODE=2 run -x LOOM_TEST_RANKS_PER_NODE -- "$build/tests/loom_mpi_tests"

echo "== data-parallel training across two nodes"
"$build/loom" data synth --out "$work/data.h5" --docs 64 --min-len 150 --max-len 300 >/dev/null
cat > "$work/config.yaml" <<CONFIG
run: {dir: $work/run}
model: {d_model: 32, n_layers: 1, n_heads: 2, n_kv_heads: 1, max_seq_len: 256}
data: {path: $work/data.h5}
train: {steps: 2, seq_len: 256, tokens_per_step: 1024}
log: {progress: false}
CONFIG
output="$(run -- "$build/loom" train --config "$work/config.yaml" 2>&1)" || { echo "$output"; exit 1; }
echo "$output" | grep "rank "
for expected in "rank 1: dp 1 sp 0 tp 0 | host node0 | local rank 1" "rank 2: dp 2 sp 0 tp 0 | host node1 | local rank 0"; do
  grep -qF "$expected" <<<"$output" || { echo "FAIL: the placement table lacks '$expected'"; exit 1; }
done
echo "cluster tests passed"
