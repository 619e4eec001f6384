// The language-model loss of a packed sequence: cross-entropy over its labelled tokens.
#pragma once
#include <torch/torch.h>

namespace loom {

// Sum (not mean) of the cross-entropy over labelled tokens (label -1: none), in float32 or wider:
// the trainer divides by the label count of the whole step so that accumulation matches one big
// batch.
torch::Tensor summed_loss(const torch::Tensor& logits, const torch::Tensor& labels);

}  // namespace loom
