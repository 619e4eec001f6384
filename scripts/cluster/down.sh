#!/usr/bin/env bash
# Removes what scripts/cluster/up.sh created: the loom-node* namespaces, loom-rail* bridges and DIR.
set -uo pipefail
dir=/tmp/loom-cluster
[[ "${1:-}" == "--dir" ]] && dir="$2"
for ns in $(ip netns list 2>/dev/null | awk '/^loom-node[0-9]+/ {print $1}'); do ip netns delete "$ns"; done
for br in $(ip -o link show type bridge 2>/dev/null | awk -F': ' '/loom-rail[0-9]+/ {print $2}'); do ip link delete "$br"; done
for v in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | grep '^loom-n[0-9]*k[0-9]*@' | cut -d@ -f1); do ip link delete "$v"; done
rm -rf "$dir"
exit 0
