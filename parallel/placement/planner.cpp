#include "parallel/placement/planner.h"

#include <algorithm>
#include <numeric>
#include <string>

#include "runtime/core/error.h"

namespace loom {
namespace {

// Sequence indices, longest first (ties by index, so every rank orders them alike).
std::vector<int64_t> longest_first(const std::vector<int64_t>& lengths) {
  std::vector<int64_t> order(lengths.size());
  std::iota(order.begin(), order.end(), int64_t{0});
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return lengths[a] > lengths[b]; });
  return order;
}

Span span_of(const std::vector<int>& ranks, const Topology& t) {
  if (ranks.size() == 1) return Span::kLocal;
  return t.node_of(ranks.front()) == t.node_of(ranks.back()) ? Span::kIntraNode : Span::kInterNode;
}

Placement everywhere(int64_t sequence, const Topology& t) {
  std::vector<int> ranks(t.world());
  std::iota(ranks.begin(), ranks.end(), 0);
  return {sequence, ranks, span_of(ranks, t)};
}

// The group sizes a ring may have: powers of two inside a node, then whole nodes.
std::vector<int> group_sizes(const Topology& t) {
  std::vector<int> sizes;
  for (int p = 1; p < t.ranks_per_node; p *= 2) sizes.push_back(p);
  for (int nodes = 1; nodes <= t.nodes; ++nodes) sizes.push_back(nodes * t.ranks_per_node);
  return sizes;
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The ring group size for a sequence of `length`: see plan_zeppelin.
int group_size(int64_t length, double fair_s, int64_t max_tokens, const Topology& t, const CostModel& cost,
               const PlacementOptions& options) {
  const std::vector<int> sizes = group_sizes(t);
  const int64_t need = max_tokens > 0 ? ceil_div(length, max_tokens) : 1;
  const double whole_s = cost.attention_s(length) + cost.linear_s(length);
  size_t i = 0;
  while (i + 1 < sizes.size() && (whole_s / sizes[i] > fair_s || sizes[i] < need)) ++i;
  const double inter_gbyte_s = std::min(t.intra_gbyte_s, t.nic_gbyte_s * (options.routing ? t.nics_per_node : 1));
  const auto hides = [&](int p) {
    const double link = p > t.ranks_per_node ? inter_gbyte_s : t.intra_gbyte_s;
    return static_cast<double>(length) / p >= cost.min_hiding_chunk(link);
  };
  while (i > 0 && !hides(sizes[i]) && sizes[i - 1] >= need) --i;
  return sizes[i];
}

// The aligned blocks of `p` ranks a ring may use: inside each node, ranks [j p, (j + 1) p) of it;
// beyond a node, nodes [j q, (j + 1) q) whole for p = q ranks_per_node.
std::vector<std::vector<int>> blocks_of(int p, const Topology& t) {
  const int width = p <= t.ranks_per_node ? p : p / t.ranks_per_node * t.ranks_per_node;
  const int span = p <= t.ranks_per_node ? t.ranks_per_node : t.world();  // blocks never straddle this
  std::vector<std::vector<int>> blocks;
  for (int start = 0; start < t.world(); start += span)
    for (int first = start; first + width <= start + span; first += width) {
      blocks.emplace_back(width);
      std::iota(blocks.back().begin(), blocks.back().end(), first);
    }
  return blocks;
}

// The block of `p` ranks where a ring can start soonest (its busiest member is the least busy).
std::vector<int> pick_ranks(int p, const std::vector<double>& load, const Topology& t) {
  if (p == 1) return {static_cast<int>(std::min_element(load.begin(), load.end()) - load.begin())};
  std::vector<int> best;
  double best_start = 0;
  for (std::vector<int>& ranks : blocks_of(p, t)) {
    double start = 0;
    for (const int r : ranks) start = std::max(start, load[r]);
    if (best.empty() || start < best_start) best = std::move(ranks), best_start = start;
  }
  return best;
}

// The execution order: inter-node rings first, then intra-node rings, then whole sequences.
std::vector<Placement> in_queue_order(std::vector<Placement> placements) {
  std::stable_sort(placements.begin(), placements.end(),
                   [](const Placement& a, const Placement& b) { return a.span > b.span; });
  return placements;
}

}  // namespace

std::vector<std::vector<int>> ring_groups(const Topology& topology) {
  std::vector<std::vector<int>> groups;
  for (const int p : group_sizes(topology))
    if (p > 1)
      for (auto& block : blocks_of(p, topology)) groups.push_back(std::move(block));
  return groups;
}

StepPlan plan_zeppelin(const std::vector<int64_t>& lengths, const Topology& topology, const CostModel& cost,
                       const PlacementOptions& options, int64_t max_tokens_per_rank) {
  double total_s = 0;
  for (const int64_t l : lengths) total_s += cost.attention_s(l) + cost.linear_s(l);
  const double fair_s = total_s / topology.world();
  const double inter_gbyte_s = topology.nic_gbyte_s * (options.routing ? topology.nics_per_node : 1);
  std::vector<double> load(topology.world(), 0.0);
  std::vector<Placement> placements;
  for (const int64_t s : longest_first(lengths)) {
    const int p = group_size(lengths[s], fair_s, max_tokens_per_rank, topology, cost, options);
    Placement placement{s, pick_ranks(p, load, topology), Span::kLocal};
    placement.span = span_of(placement.ranks, topology);
    double start = 0;
    for (const int r : placement.ranks) start = std::max(start, load[r]);
    const double seconds = placement_s(placement, lengths[s], topology, cost, std::min(topology.intra_gbyte_s, inter_gbyte_s)) +
                           cost.linear_s(lengths[s]) / p;
    for (const int r : placement.ranks) load[r] = start + seconds;
    placements.push_back(std::move(placement));
  }
  return predict(in_queue_order(std::move(placements)), lengths, topology, cost, options);
}

StepPlan plan_uniform(const std::vector<int64_t>& lengths, const Topology& topology, const CostModel& cost, int cp) {
  check(cp > 0 && topology.world() % cp == 0, "context parallelism over " + std::to_string(cp) + " ranks: it must divide the " +
                                                  std::to_string(topology.world()) + " ranks of the topology");
  std::vector<int64_t> tokens(topology.world() / cp, 0);
  std::vector<Placement> placements;
  for (const int64_t s : longest_first(lengths)) {
    const auto group = static_cast<int>(std::min_element(tokens.begin(), tokens.end()) - tokens.begin());
    tokens[group] += lengths[s];
    std::vector<int> ranks(cp);
    std::iota(ranks.begin(), ranks.end(), group * cp);
    placements.push_back({s, ranks, span_of(ranks, topology)});
  }
  return predict(std::move(placements), lengths, topology, cost, {});
}

StepPlan plan_token_balanced(const std::vector<int64_t>& lengths, const Topology& topology, const CostModel& cost,
                             int64_t max_tokens_per_rank) {
  std::vector<int64_t> tokens(topology.world(), 0);
  std::vector<Placement> placements;
  for (const int64_t s : longest_first(lengths)) {
    if (max_tokens_per_rank > 0 && lengths[s] > max_tokens_per_rank && topology.world() > 1) {
      placements.push_back(everywhere(s, topology));
      continue;
    }
    const int r = static_cast<int>(std::min_element(tokens.begin(), tokens.end()) - tokens.begin());
    tokens[r] += lengths[s];
    placements.push_back({s, {r}, Span::kLocal});
  }
  return predict(in_queue_order(std::move(placements)), lengths, topology, cost, {});
}

}  // namespace loom
