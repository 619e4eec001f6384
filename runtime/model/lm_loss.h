// The language-model loss of a packed sequence: cross-entropy over its labelled tokens (label -1:
// none), summed (not averaged: the trainer divides by the label count of the whole step, so that
// accumulation matches one big batch), with the softmax in float32 or wider.
#pragma once
#include <torch/torch.h>

namespace loom {

// From the logits [N, V].
torch::Tensor summed_loss(const torch::Tensor& logits, const torch::Tensor& labels);

// The LM head and the loss together, `rows` rows of logits at a time, so the [N, V] logits never
// exist whole (a 128K vocabulary at 32K tokens would be 16 GB in float32): hidden [N, D] are the
// final normalised hidden states, weight [V, D] the LM head (or the tied embedding). Equals
// summed_loss(hidden Wᵀ, labels), value and gradients. The loss is a scalar, so each chunk's
// gradients of hidden and weight are computed in the forward, while its logits exist, and the
// backward only scales them; without grad mode nothing but the loss is computed.
torch::Tensor chunked_head_loss(const torch::Tensor& hidden, const torch::Tensor& weight, const torch::Tensor& labels,
                                int64_t rows);

}  // namespace loom
