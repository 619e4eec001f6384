#!/usr/bin/env bash
# A multi-node cluster on one machine, for testing and measuring what crosses nodes.
#
#   scripts/cluster/up.sh --nodes 2 --ranks-per-node 1 --nics-per-node 1 --nic-gbit 1 [--dir DIR]
#
# Each node is a network namespace (loom-node<i>); each of its NICs is a veth pair shaped with tc to
# the given bandwidth and plugged into one bridge per NIC index (a "rail", as in GPU clusters), on
# subnet 10.77.<nic>.0/24 with the node at .<i+1>. Processes started on a node also get a UTS
# namespace whose hostname is node<i>, so Loom's node-local grouping sees distinct nodes.
# DIR (default /tmp/loom-cluster) receives:
#   hostfile        one line per node for mpirun
#   rsh-agent       what mpirun uses instead of ssh to start a process inside a node
#   subnet          the address range MPI's TCP transport is restricted to
#   cores-per-rank  threads each rank should use
# launch/loom-run --cluster DIR uses them; scripts/cluster/down.sh removes everything.
# Needs root (or CAP_NET_ADMIN) and iproute2; touches only the names and addresses above.
set -euo pipefail

nodes=2 ranks_per_node=1 nics=1 gbit=1 dir=/tmp/loom-cluster
while [[ $# -gt 0 ]]; do
  case "$1" in
    --nodes) nodes="$2"; shift 2 ;;
    --ranks-per-node) ranks_per_node="$2"; shift 2 ;;
    --nics-per-node) nics="$2"; shift 2 ;;
    --nic-gbit) gbit="$2"; shift 2 ;;
    --dir) dir="$2"; shift 2 ;;
    *) echo "up.sh: unknown option $1 (see the comment at the top of this script)" >&2; exit 2 ;;
  esac
done
[[ "$nodes" -ge 1 && "$nodes" -le 200 && "$nics" -ge 1 && "$nics" -le 8 ]] || { echo "up.sh: 1..200 nodes, 1..8 NICs" >&2; exit 2; }
[[ "$(id -u)" == 0 ]] || { echo "up.sh: creating network namespaces needs root" >&2; exit 1; }

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$here/down.sh" --dir "$dir" >/dev/null 2>&1 || true
mkdir -p "$dir"

for ((k = 0; k < nics; k++)); do
  ip link add "loom-rail$k" type bridge
  ip addr add "10.77.$k.254/24" dev "loom-rail$k"  # mpirun itself runs outside the nodes
  ip link set "loom-rail$k" up
done

: > "$dir/hostfile"
: > "$dir/nodes"
for ((i = 0; i < nodes; i++)); do
  ns="loom-node$i"
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  for ((k = 0; k < nics; k++)); do
    outside="loom-n${i}k${k}"
    ip link add "$outside" type veth peer name "eth$k" netns "$ns"
    ip link set "$outside" master "loom-rail$k" up
    ip -n "$ns" addr add "10.77.$k.$((i + 1))/24" dev "eth$k"
    ip -n "$ns" link set "eth$k" up
    # Both directions are shaped: what the node sends (inside) and what it receives (outside).
    tc -n "$ns" qdisc add dev "eth$k" root tbf rate "${gbit}gbit" burst 1mb latency 100ms
    tc qdisc add dev "$outside" root tbf rate "${gbit}gbit" burst 1mb latency 100ms
  done
  echo "10.77.0.$((i + 1)) slots=$ranks_per_node" >> "$dir/hostfile"
  echo "10.77.0.$((i + 1)) $ns node$i" >> "$dir/nodes"
done

cat > "$dir/rsh-agent" <<AGENT
#!/usr/bin/env bash
# Called by mpirun like ssh: rsh-agent HOST COMMAND... ; runs COMMAND inside HOST's node.
host="\$1"; shift
read -r _ ns name < <(grep "^\$host " "$dir/nodes") || { echo "rsh-agent: \$host is not a node of $dir" >&2; exit 255; }
exec ip netns exec "\$ns" unshare --uts bash -c "hostname \$name && \$*"
AGENT
chmod +x "$dir/rsh-agent"
echo "10.77.0.0/16" > "$dir/subnet"
cores=$(nproc)
echo $(( cores / (nodes * ranks_per_node) > 0 ? cores / (nodes * ranks_per_node) : 1 )) > "$dir/cores-per-rank"
echo "cluster up in $dir: $nodes nodes x $ranks_per_node ranks, $nics NIC(s) of ${gbit} Gbit/s each"
