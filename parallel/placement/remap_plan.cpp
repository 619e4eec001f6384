#include "parallel/placement/remap_plan.h"

#include <algorithm>
#include <numeric>
#include <string>

#include "runtime/core/error.h"

namespace loom {
namespace {

// Moves surplus to deficit among `ranks`, in rank order, until one side is exhausted.
void settle(const std::vector<int>& ranks, std::vector<int64_t>& surplus, std::vector<std::vector<int64_t>>& moves) {
  size_t give = 0, take = 0;
  while (true) {
    while (give < ranks.size() && surplus[ranks[give]] <= 0) ++give;
    while (take < ranks.size() && surplus[ranks[take]] >= 0) ++take;
    if (give == ranks.size() || take == ranks.size()) return;
    const int from = ranks[give], to = ranks[take];
    const int64_t n = std::min(surplus[from], -surplus[to]);
    moves[from][to] += n;
    surplus[from] -= n;
    surplus[to] += n;
  }
}

}  // namespace

std::vector<int64_t> RemapPlan::send_rows(int rank) const {
  std::vector<int64_t> rows = moves[rank];
  rows[rank] = before[rank] - std::accumulate(rows.begin(), rows.end(), int64_t{0});
  return rows;
}

std::vector<int64_t> RemapPlan::recv_rows(int rank) const {
  std::vector<int64_t> rows(moves.size());
  for (size_t p = 0; p < moves.size(); ++p) rows[p] = moves[p][rank];
  rows[rank] = send_rows(rank)[rank];
  return rows;
}

RemapPlan plan_remap(const std::vector<int64_t>& tokens_per_rank, const Topology& topology) {
  const int world = topology.world();
  check(static_cast<int>(tokens_per_rank.size()) == world,
        "remap: " + std::to_string(tokens_per_rank.size()) + " token counts for a topology of " + std::to_string(world) +
            " ranks; give one count per rank");
  RemapPlan plan;
  plan.before = tokens_per_rank;
  const int64_t total = std::accumulate(tokens_per_rank.begin(), tokens_per_rank.end(), int64_t{0});
  plan.after.resize(world);
  std::vector<int64_t> surplus(world);
  for (int r = 0; r < world; ++r) {
    plan.after[r] = total / world + (r < total % world ? 1 : 0);
    surplus[r] = tokens_per_rank[r] - plan.after[r];
  }
  plan.moves.assign(world, std::vector<int64_t>(world, 0));
  std::vector<int> all(world);
  std::iota(all.begin(), all.end(), 0);
  for (int node = 0; node < topology.nodes; ++node)
    settle({all.begin() + node * topology.ranks_per_node, all.begin() + (node + 1) * topology.ranks_per_node}, surplus,
           plan.moves);
  settle(all, surplus, plan.moves);
  return plan;
}

}  // namespace loom
