// This rank's part of one packed sequence, which is what the model's forward reads: the tokens it
// computes, and, under sequence parallelism, how the whole sequence is laid out over the sp ranks
// (so attention and LaCT's fast-weight updates know where every other token is).
#pragma once
#include <memory>

#include "parallel/comm/communicator.h"
#include "parallel/sequence/sequence_layout.h"
#include "runtime/core/packed_tensors.h"

namespace loom {

// The ranks a sequence is split over when that is not the mesh's sp group (a ring a placement
// chose, parallel/placement/): the shards travel on `forward`, TokenRing's returned partials on
// `back`, LaCT's fast-weight update sums on `sync`, three communicators over the same ranks in ring
// order. They outlive every backward.
struct Ring {
  Communicator* forward = nullptr;
  Communicator* back = nullptr;
  Communicator* sync = nullptr;
  int size() const { return forward->size(); }
  int rank() const { return forward->rank(); }
};

struct SequenceShard {
  PackedTensors tokens;                          // this rank's tokens; label_count stays the whole sequence's
  std::shared_ptr<const SequenceLayout> layout;  // null: this rank holds the whole sequence
  int64_t rank = 0;                              // this rank's shard of the layout
  const Ring* ring = nullptr;                    // null: the layout spans the sp group parallelize() was given

  bool sharded() const { return layout != nullptr; }
};

// The whole sequence on this rank.
SequenceShard whole_sequence(PackedTensors batch);

// Rank `rank`'s shard of `batch` cut into `ranks` shards, zigzag when causal (sequence_layout.h):
// padding tokens have document id -1 and no label.
SequenceShard shard_sequence(const PackedTensors& batch, int64_t ranks, int64_t rank, bool causal = true);

// This rank's shard of `batch` over `ring` (causal).
SequenceShard shard_over(const PackedTensors& batch, const Ring& ring);

}  // namespace loom
