#include "parallel/placement/step_plan.h"

#include <algorithm>
#include <numeric>
#include <set>

#include "parallel/placement/remap_plan.h"

namespace loom {
namespace {

// The bandwidth one inter-node ring edge gets: its own NIC; with routing, the sending node's NICs
// shared among the inter-node rings the node takes part in (capped by the hop to the proxies).
double inter_node_gbyte_s(const Placement& p, const std::vector<Placement>& all, const Topology& t,
                          const PlacementOptions& options) {
  if (!options.routing) return t.nic_gbyte_s;
  int busiest = 1;
  for (const int node : std::set<int>{t.node_of(p.ranks.front()), t.node_of(p.ranks.back())}) {
    int rings = 0;
    for (const Placement& q : all) {
      if (q.span != Span::kInterNode) continue;
      rings += std::any_of(q.ranks.begin(), q.ranks.end(), [&](int r) { return t.node_of(r) == node; });
    }
    busiest = std::max(busiest, rings);
  }
  return std::min(t.intra_gbyte_s, t.nic_gbyte_s * t.nics_per_node / busiest);
}

// The seconds the linear layers' all-to-alls take to make plan_remap's moves for `tokens`: what
// crosses nodes goes over each node's NICs together, the rest over the node's links (a rank only
// sends or only receives, so its intra-node moves are one direction of its link).
double remap_s(const std::vector<int64_t>& tokens, const Topology& t, const CostModel& cost) {
  const RemapPlan plan = plan_remap(tokens, t);
  std::vector<double> across(t.nodes, 0.0), within(t.world(), 0.0);
  for (int from = 0; from < t.world(); ++from)
    for (int to = 0; to < t.world(); ++to) {
      const auto n = static_cast<double>(plan.moves[from][to]);
      if (t.node_of(from) == t.node_of(to)) {
        within[from] += n;
        within[to] += n;
      } else {
        across[t.node_of(from)] += n;
        across[t.node_of(to)] += n;
      }
    }
  double slowest = 0;
  for (int node = 0; node < t.nodes; ++node) {
    const auto first = within.begin() + node * t.ranks_per_node;
    const double busiest_link = *std::max_element(first, first + t.ranks_per_node);
    slowest = std::max(slowest, (across[node] * cost.remap_bytes_per_token / (t.nic_gbyte_s * t.nics_per_node * 1e9)) +
                                    busiest_link * cost.remap_bytes_per_token / (t.intra_gbyte_s * 1e9));
  }
  return slowest;
}

}  // namespace

const char* span_name(Span span) {
  switch (span) {
    case Span::kLocal: return "local";
    case Span::kIntraNode: return "intra-node";
    case Span::kInterNode: return "inter-node";
  }
  return "?";
}

double placement_s(const Placement& p, int64_t length, const Topology& topology, const CostModel& cost,
                   double inter_gbyte_s) {
  const int g = static_cast<int>(p.ranks.size());
  switch (p.span) {
    case Span::kLocal: return cost.attention_s(length);
    case Span::kIntraNode: return cost.ring_s(length, g, topology.intra_gbyte_s, topology.intra_latency_s);
    case Span::kInterNode: return cost.ring_s(length, g, inter_gbyte_s, topology.nic_latency_s);
  }
  return 0;
}

std::vector<std::pair<int64_t, int64_t>> zigzag_ranges(int64_t length, int group, int index) {
  if (group == 1) return {{0, length}};
  const auto bound = [&](int64_t j) { return length * j / (2 * group); };
  const int64_t mirror = 2 * group - 1 - index;
  return {{bound(index), bound(index + 1)}, {bound(mirror), bound(mirror + 1)}};
}

StepPlan predict(std::vector<Placement> placements, const std::vector<int64_t>& lengths, const Topology& topology,
                 const CostModel& cost, const PlacementOptions& options) {
  StepPlan plan;
  plan.rank_s.assign(topology.world(), 0.0);
  std::vector<int64_t> tokens(topology.world(), 0);
  for (const Placement& p : placements) {
    const int64_t length = lengths[p.sequence];
    const int g = static_cast<int>(p.ranks.size());
    const double inter = p.span == Span::kInterNode ? inter_node_gbyte_s(p, placements, topology, options) : 0.0;
    const double seconds = placement_s(p, length, topology, cost, inter);
    double start = 0;
    for (const int r : p.ranks) start = std::max(start, plan.rank_s[r]);
    for (int i = 0; i < g; ++i) {
      plan.rank_s[p.ranks[i]] = start + seconds;
      for (const auto& [begin, end] : zigzag_ranges(length, g, i)) tokens[p.ranks[i]] += end - begin;
    }
  }
  // The linear layers where attention left the tokens, or evened out by the remap's all-to-alls.
  const int64_t total = std::accumulate(tokens.begin(), tokens.end(), int64_t{0});
  std::vector<double> stay = plan.rank_s, moved = plan.rank_s;
  const double remap = options.remap ? remap_s(tokens, topology, cost) : 0.0;
  for (int r = 0; r < topology.world(); ++r) {
    stay[r] += cost.linear_s(tokens[r]);
    moved[r] += cost.linear_s((total + topology.world() - 1) / topology.world()) + remap;
  }
  const double stay_s = *std::max_element(stay.begin(), stay.end());
  const double moved_s = *std::max_element(moved.begin(), moved.end());
  plan.remapped = options.remap && moved_s < stay_s;
  plan.rank_s = plan.remapped ? moved : stay;
  plan.step_s = plan.remapped ? moved_s : stay_s;
  plan.placements = std::move(placements);
  return plan;
}

}  // namespace loom
