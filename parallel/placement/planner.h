// Placements of one step's sequences: Zeppelin's hierarchical partitioning (Chen et al., arXiv
// 2509.21841) and the two baselines it is measured against. Each is a deterministic
// function of the step's lengths, so every rank computes the same plan from the same lengths.
#pragma once
#include <cstdint>
#include <vector>

#include "parallel/placement/step_plan.h"

namespace loom {

// Zeppelin: each sequence, longest first, is split over the fewest ranks (a power of two inside a
// node, whole nodes beyond) that bring its cost to one rank's fair share of the step and its
// length per rank under `max_tokens_per_rank` (0: no limit), but never so finely that its ring
// steps cannot hide their transfers over the link the group crosses: a sequence too short for that
// stays inside a node or whole. Each ring goes to the group of ring_groups() of its size where it
// can start soonest; whole sequences to the least-loaded rank (largest first).
StepPlan plan_zeppelin(const std::vector<int64_t>& lengths, const Topology& topology, const CostModel& cost,
                       const PlacementOptions& options, int64_t max_tokens_per_rank = 0);

// The rings plan_zeppelin may use, fixed by the topology so that their communicators are built once:
// every aligned block of p ranks inside a node (p a power of two below the node's size, or the
// whole node: ranks [j p, (j + 1) p) of the node) and every aligned block of q whole nodes.
std::vector<std::vector<int>> ring_groups(const Topology& topology);

// Context parallelism as Loom does it without a placement: the ranks form groups of `cp` consecutive
// ranks (data parallelism over the groups), each sequence goes to the group with the fewest tokens
// so far (largest first) and is split over all of that group. `cp` must divide the world.
StepPlan plan_uniform(const std::vector<int64_t>& lengths, const Topology& topology, const CostModel& cost, int cp);

// Packing balanced on tokens: every sequence whole, on the rank with the fewest tokens so far
// (largest first); a sequence over `max_tokens_per_rank` is split over every rank instead.
StepPlan plan_token_balanced(const std::vector<int64_t>& lengths, const Topology& topology, const CostModel& cost,
                             int64_t max_tokens_per_rank = 0);

}  // namespace loom
