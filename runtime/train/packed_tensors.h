// A packed batch as the tensors the model takes, and the loss over its labelled tokens.
#pragma once
#include <torch/torch.h>

#include "parallel/attention/sequence_layout.h"
#include "runtime/data/batch_loader.h"
#include "runtime/model/llama.h"

namespace loom {

struct PackedTensors {
  torch::Tensor tokens, positions, doc_ids, labels;  // int64 [N]; label -1 = no loss
  int64_t label_count = 0;
};

PackedTensors to_tensors(const PackedBatch& batch);

// Rank `rank`'s tokens of `batch` under a sequence-parallel layout; padding tokens have document id
// -1 and no label. label_count stays the whole batch's.
PackedTensors shard(const PackedTensors& batch, const SequenceLayout& layout, int64_t rank);

// Sum (not mean) of the cross-entropy over labelled tokens, in float32 or wider: the trainer divides
// by the label count of the whole step so that accumulation matches one big batch.
torch::Tensor summed_loss(const torch::Tensor& logits, const torch::Tensor& labels);

// Training FLOPs of one batch (forward + backward, 3x the forward): dense layers plus attention.
double training_flops(const Llama& model, const PackedTensors& batch);

}  // namespace loom
