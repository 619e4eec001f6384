// Attention of a whole packed sequence on one rank, as an autograd function over the block kernel.
#pragma once
#include <torch/torch.h>

#include "kernels/attention/block_attention.h"

namespace loom {

// q [Hq, N, d], k/v [Hkv, N, d] -> out [Hq, N, d] in q's dtype. Differentiable in q, k and v.
torch::Tensor local_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                              const AttentionMask& mask, double scale);

}  // namespace loom
