// Zeppelin's remapping (Chen et al., arXiv 2509.21841): attention leaves each rank with
// the tokens of the sequences placed on it, uneven counts; the linear layers want the same count on
// every rank. This plan says how many tokens each rank sends to each other rank to even them out,
// moving tokens inside a node before any crosses nodes.
#pragma once
#include <cstdint>
#include <vector>

#include "parallel/placement/topology.h"

namespace loom {

struct RemapPlan {
  std::vector<int64_t> before;              // tokens per rank in the attention layout
  std::vector<int64_t> after;               // in the linear layout: the total over the ranks, evened out
  std::vector<std::vector<int64_t>> moves;  // moves[i][j]: tokens rank i sends rank j (0 on the diagonal)

  // The all-to-all's row counts for `rank`, in rank order, its own entry being the tokens it keeps:
  // rank r's rows go out in that order, so its first rows go to rank 0 (kept where r = 0).
  std::vector<int64_t> send_rows(int rank) const;
  std::vector<int64_t> recv_rows(int rank) const;
};

// Ranks 0 .. total % world - 1 get one token more than the others. A rank only sends or only
// receives, surplus goes to deficit inside each node first, and only the nodes' own surpluses cross
// nodes, so no fewer tokens can cross.
RemapPlan plan_remap(const std::vector<int64_t>& tokens_per_rank, const Topology& topology);

}  // namespace loom
