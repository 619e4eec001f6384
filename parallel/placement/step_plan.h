// Where a step's sequences are computed (Zeppelin: Chen et al., arXiv 2509.21841), and
// what that placement is predicted to cost. A sequence is either whole on one rank or split over a
// ring group of ranks, inside one node or across nodes; a split sequence is cut into 2G zigzag
// chunks, rank i of the group taking chunks i and 2G-1-i, so that every rank gets the same share of
// the causal attention.
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

#include "parallel/placement/cost_model.h"
#include "parallel/placement/topology.h"

namespace loom {

enum class Span { kLocal, kIntraNode, kInterNode };
const char* span_name(Span span);

struct Placement {
  int64_t sequence = 0;    // index into the step's lengths
  std::vector<int> ranks;  // the ring group in ring order; one rank: the sequence is whole there
  Span span = Span::kLocal;
};

// The token ranges [begin, end) of a sequence of `length` that member `index` of a group of `group`
// ranks holds: the whole sequence for a group of one, else its two zigzag chunks (chunk boundaries
// at length * j / 2G, so any length is covered exactly once).
std::vector<std::pair<int64_t, int64_t>> zigzag_ranges(int64_t length, int group, int index);

// The seconds a placement's attention takes (a ring's or one rank's), with inter-node ring edges
// at `inter_gbyte_s`.
double placement_s(const Placement& p, int64_t length, const Topology& topology, const CostModel& cost,
                   double inter_gbyte_s);

struct PlacementOptions {
  bool routing = false;  // inter-node ring traffic spread over the node's idle NICs
  bool remap = false;    // the linear layers on a token-balanced layout
};

struct StepPlan {
  std::vector<Placement> placements;  // in execution order: inter-node, intra-node, local
  std::vector<double> rank_s;         // predicted seconds per rank
  double step_s = 0;                  // the slowest rank's
  bool remapped = false;              // the linear layers run on the token-balanced layout
};

// Predicts each rank's seconds for `placements` (in their order: a ring starts when its last member
// is free, and keeps every member busy until it ends), plus the linear layers: on the attention
// layout, or with `remap` on an even share of the tokens after an all-to-all where that makes the
// step shorter.
StepPlan predict(std::vector<Placement> placements, const std::vector<int64_t>& lengths, const Topology& topology,
                 const CostModel& cost, const PlacementOptions& options);

}  // namespace loom
