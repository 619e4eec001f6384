// The vocabulary split over the tp ranks (Megatron's vocab-parallel embedding and cross-entropy):
// rank r holds the rows [begin, end) of the embedding and of the LM head, and no rank ever holds a
// whole row of logits.
#pragma once
#include <torch/torch.h>

#include "parallel/comm/communicator.h"
#include "parallel/tensor/tensor_shard.h"

namespace loom {

// A rank's rows of the vocabulary: split_evenly(0, vocab, tp, rank).

// This rank's part of the embedding of `tokens` [N]: their rows where this shard holds them, zero
// elsewhere, so the sum over the ranks is the embedding. Differentiable in `weight` [shard, D].
torch::Tensor vocab_parallel_embedding(const torch::Tensor& tokens, const torch::Tensor& weight, const TensorShard& shard);

// The summed cross-entropy of hidden [N, D] (every rank holds all rows) through the LM head, whose
// rows [shard] this rank holds as weight: each rank computes its slice of the logits, and the
// softmax's max, normaliser and target logit are summed over the ranks, so every rank gets the
// whole loss. The backward is local: each rank's slice of the logits' gradient, back through its
// slice of the head, leaves a partial gradient of hidden (the ranks' parts sum to the gradient).
// Labels -1 carry no loss. In float32 or wider. `tp` must outlive the backward.
torch::Tensor vocab_parallel_loss(const torch::Tensor& hidden, const torch::Tensor& weight, const torch::Tensor& labels,
                                  const TensorShard& shard, Communicator& tp);

// The whole logits [N, vocab] from every rank's slice [N, shard] (no gradient: evaluation and
// generation read them).
torch::Tensor gather_vocab(const torch::Tensor& logits, const TensorShard& shard, Communicator& tp);

}  // namespace loom
