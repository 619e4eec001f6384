// One packed sequence as the model trains on it (several documents back to back, each with its own
// positions) and the language-model loss over its labelled tokens.
#pragma once
#include <torch/torch.h>

namespace loom {

struct PackedTensors {
  torch::Tensor tokens, positions, doc_ids, labels;  // int64 [N]; doc id -1 = padding, label -1 = no loss
  int64_t label_count = 0;                           // labels of the whole sequence (before any sharding)
};

// Sum (not mean) of the cross-entropy over labelled tokens, in float32 or wider: the trainer divides
// by the label count of the whole step so that accumulation matches one big batch.
torch::Tensor summed_loss(const torch::Tensor& logits, const torch::Tensor& labels);

}  // namespace loom
