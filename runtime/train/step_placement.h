// Zeppelin's placement in the trainer (parallel.placement: zeppelin; Chen et al., arXiv
// 2509.21841). Every rank of the dp x sp group reads all of a step's micro-batches, cuts them into
// their documents and computes the same plan from the same lengths (parallel/placement/planner.h):
// a document is either whole on one rank or split over a ring of ranks. Each rank then
// backpropagates its part: first the rings it belongs to, in the plan's queue order (inter-node,
// intra-node), each document as its own micro-batch sharded over that ring; then the documents it
// holds whole, packed together. The global batch and its loss are those of uniform placement: the
// plan only moves where the step's tokens are computed.
//
// Not in this version: the routing and remapping layers inside a step (the plan is made without
// them), tensor parallelism, LaCT layers and chunk-wise backprop with a placement (config.cpp
// refuses them).
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "parallel/mesh.h"
#include "parallel/placement/cost_model.h"
#include "parallel/placement/ring_communicators.h"
#include "runtime/core/config.h"
#include "runtime/data/batch_loader.h"
#include "runtime/train/backprop.h"

namespace loom {

// The cluster the plan is made for: parallel.topology, or one node of the `replicas` ranks. Its
// ranks must be the replicas.
Topology placement_topology(const Config& config, int64_t replicas);

// The cost model of the config's model on the topology's ranks.
CostModel placement_cost(const Config& config, const Topology& topology);

// The most tokens of one sequence a rank computes: what uniform placement gives it, seq_len / sp.
int64_t placement_cap(const Config& config);

// The documents of a packed sequence, in order, each with document id 0 (padding dropped).
std::vector<PackedTensors> documents_of(const PackedTensors& packed);

// The lengths of the documents of the next `micro_batches` micro-batches `loader` gives: what a
// placement plans a step from.
std::vector<int64_t> next_step_lengths(BatchLoader& loader, int64_t micro_batches);

// This rank's work of one step.
struct StepWork {
  std::vector<MicroBatch> micro;  // the rings first, in queue order, then the packed whole documents
  int64_t labels = 0;             // of the whole step
  int64_t rings = 0;              // documents of the step split over rings
};

class StepPlacement {
 public:
  // Collective over the mesh's dp x sp group: builds the communicators of every ring a plan may use.
  StepPlacement(const Config& config, const Mesh& mesh);

  // Plans the step's micro-batches (all of them, the same on every rank) and returns this rank's
  // part; `first_index` is the index of the step's first micro-batch in the run.
  StepWork place(const std::vector<PackedTensors>& step, int64_t first_index) const;

  const Topology& topology() const { return topology_; }

 private:
  Topology topology_;
  CostModel cost_;
  int64_t cap_;
  int rank_;
  RingCommunicators rings_;
};

}  // namespace loom
