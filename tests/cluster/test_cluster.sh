#!/usr/bin/env bash
# Label `cluster`: Loom across an emulated 2-node cluster (scripts/cluster/up.sh, 2 ranks per node,
# 1 Gbit/s NICs): every collective test with node-local groups of two, data-parallel training
# whose placement table shows two hosts, and `loom bench calibrate` finding the two nodes of two
# ranks and the shaped NIC's rate. Skips (exit 77) where root or network namespaces are missing.
#   tests/cluster/test_cluster.sh BUILD_DIR
set -euo pipefail
build="$(cd "$1" && pwd)"
source_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

# Creating a namespace can work where entering one does not (a chroot): probe both.
if [[ "$(id -u)" != 0 ]] || ! { ip netns add loom-probe && ip netns exec loom-probe true; } 2>/dev/null; then
  ip netns delete loom-probe 2>/dev/null
  echo "SKIPPED: the cluster tests need root and network namespaces (ip netns add / exec)"
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
echo "== loom bench calibrate across two nodes"
run -- "$build/loom" bench calibrate --config "$work/config.yaml" --set model.max_seq_len=2048 --lengths 512 1024 2048 \
  --out "$work/calibrated.yaml" --bytes 8388608 --reps 3
cat "$work/calibrated.yaml"
for expected in "nodes: 2" "ranks_per_node: 2"; do
  grep -qx "$expected" "$work/calibrated.yaml" || { echo "FAIL: the calibrated topology lacks '$expected'"; exit 1; }
done
# tc shapes the NIC to 1 Gbit/s = 0.125 GB/s; the exchange must find that rate, give or take framing.
nic=$(sed -n 's/^nic_gbyte_s: //p' "$work/calibrated.yaml")
python3 -c "import sys; sys.exit(0 if 0.08 <= $nic <= 0.14 else 1)" || { echo "FAIL: the NIC measured $nic GB/s, not 1 Gbit/s"; exit 1; }
"$build/loom" plan --config "$work/config.yaml" --set parallel.sp=2 --set train.seq_len=256 --topology "$work/calibrated.yaml" >/dev/null
echo "cluster tests passed"
