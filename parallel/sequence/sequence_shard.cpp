#include "parallel/sequence/sequence_shard.h"

namespace loom {

SequenceShard whole_sequence(PackedTensors batch) { return {std::move(batch), nullptr, 0, nullptr}; }

SequenceShard shard_sequence(const PackedTensors& b, int64_t ranks, int64_t rank, bool causal) {
  auto layout = std::make_shared<const SequenceLayout>(make_sequence_layout(b.positions, b.doc_ids, ranks, causal));
  PackedTensors mine{layout->take(b.tokens, 0, rank, 0), layout->take(b.positions, 0, rank, 0),
                     layout->take(b.doc_ids, 0, rank, -1),
                     b.labels.defined() ? layout->take(b.labels, 0, rank, -1) : torch::Tensor(), b.label_count};
  return {std::move(mine), std::move(layout), rank, nullptr};
}

SequenceShard shard_over(const PackedTensors& batch, const Ring& ring) {
  SequenceShard shard = shard_sequence(batch, ring.size(), ring.rank());
  shard.ring = &ring;
  return shard;
}

}  // namespace loom
