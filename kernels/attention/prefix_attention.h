// Attention of one chunk of a sequence over its own keys and those of the chunks before it: the
// chunk-wise backprop of SeCO/SpaCO (optim/chunkwise) rebuilds one chunk at a time against the
// cached keys of the prefix.
//
// The chunk's own block is causal; each earlier chunk is one more block-kernel call, merged by
// log-sum-exp. Because masks work on positions inside documents and document ids, "the prefix is
// fully visible" and "documents never see each other" are the same mask, and no causal alignment
// question (top-left vs bottom-right) arises. Nothing is concatenated: the prefix blocks are used
// where they are, so the graph saves no copy of the prefix, and each cached chunk can be freed on
// its own. The backward returns gradients for the prefix blocks that require them.
#pragma once
#include <torch/torch.h>

#include <vector>

#include "kernels/attention/block_attention.h"

namespace loom {

// Keys and values of earlier tokens ([Hkv, n, d], after RoPE) with their positions and document ids.
struct KeyBlock {
  torch::Tensor k, v, pos, doc;
};

// q [Hq, n, d], k/v [Hkv, n, d]: this chunk's tokens at `pos`/`doc`; `prefix` the earlier chunks
// (only the first `prefix_count` are used). Returns out [Hq, n, d] in q's dtype.
torch::Tensor prefix_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                               const torch::Tensor& pos, const torch::Tensor& doc, const std::vector<KeyBlock>& prefix,
                               size_t prefix_count, double scale);

}  // namespace loom
