// This rank's part of one packed sequence, which is what the model's forward reads: the tokens it
// computes, and, under sequence parallelism, how the whole sequence is laid out over the sp ranks
// (so attention and LaCT's fast-weight updates know where every other token is).
#pragma once
#include <memory>

#include "parallel/sequence/sequence_layout.h"
#include "runtime/core/packed_tensors.h"

namespace loom {

struct SequenceShard {
  PackedTensors tokens;                          // this rank's tokens; label_count stays the whole sequence's
  std::shared_ptr<const SequenceLayout> layout;  // null: this rank holds the whole sequence
  int64_t rank = 0;                              // this rank's shard of the layout

  bool sharded() const { return layout != nullptr; }
};

// The whole sequence on this rank.
SequenceShard whole_sequence(PackedTensors batch);

// Rank `rank`'s shard of `batch` cut into `ranks` shards, zigzag when causal (sequence_layout.h):
// padding tokens have document id -1 and no label.
SequenceShard shard_sequence(const PackedTensors& batch, int64_t ranks, int64_t rank, bool causal = true);

}  // namespace loom
