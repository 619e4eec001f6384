// A packed batch from the loader as the tensors the model takes, its shards and its FLOPs.
#pragma once
#include <torch/torch.h>

#include "parallel/attention/sequence_layout.h"
#include "runtime/data/batch_loader.h"
#include "runtime/model/llama.h"
#include "runtime/model/packed_sequence.h"

namespace loom {

PackedTensors to_tensors(const PackedBatch& batch);

// Rank `rank`'s tokens of `batch` under a sequence-parallel layout; padding tokens have document id
// -1 and no label. label_count stays the whole batch's.
PackedTensors shard(const PackedTensors& batch, const SequenceLayout& layout, int64_t rank);

// Training FLOPs of one batch (forward + backward, 3x the forward): dense layers plus attention.
double training_flops(const Llama& model, const PackedTensors& batch);

}  // namespace loom
