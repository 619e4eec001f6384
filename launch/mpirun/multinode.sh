#!/usr/bin/env bash
# Loom across machines with mpirun and a hostfile, without a scheduler.
#
#   launch/mpirun/multinode.sh HOSTFILE RANKS CONFIG [--set key=value ...]
#
# HOSTFILE lists one machine per line with its rank count (one rank per GPU), for example
#   gpu-node-01 slots=8
#   gpu-node-02 slots=8
# mpirun starts the remote ranks over ssh (passwordless to every host). Every machine needs Loom at
# the same path, and run.dir and data.path on storage they all see.
set -euo pipefail
hostfile="${1:?usage: multinode.sh HOSTFILE RANKS CONFIG [--set key=value ...]}"
ranks="${2:?give the number of ranks}"
config="${3:?give the config}"
shift 3
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# Keep MPI's TCP traffic (bootstrap, CPU collectives) on the cluster network, e.g. 10.0.0.0/16, and
# pass NCCL's settings on to every rank.
network="${LOOM_NETWORK:-}"
extra=()
[[ -n "$network" ]] && extra+=(--mca btl_tcp_if_include "$network" --mca oob_tcp_if_include "$network")
for var in NCCL_DEBUG NCCL_SOCKET_IFNAME NCCL_IB_HCA; do
  [[ -n "${!var:-}" ]] && extra+=(-x "$var")
done

per_node="$(awk -F'slots=' 'NR==1 {print $2+0}' "$hostfile")"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(( $(nproc) / (per_node > 0 ? per_node : 1) ))}"
exec "$here/../loom-run" -n "$ranks" --hostfile "$hostfile" --map-by "ppr:${per_node}:node" --bind-to none \
  ${extra[@]+"${extra[@]}"} -- loom train --config "$config" --resume auto "$@"
