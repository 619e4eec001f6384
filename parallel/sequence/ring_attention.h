// Sequence-parallel attention, pass-KV ("ring", the baseline of Megatron/TransformerEngine and
// ring-flash-attention): queries stay on their rank while K/V shards travel one hop per step
// around the ring; each rank merges the partial results for its own queries. Backward: the same
// ring again, with each K/V shard's gradient accumulator travelling one step behind it, so that
// both transfers run while the next block computes.
//
// Shapes: this rank's shard of `layout`: q [Hq, n, d], k/v [Hkv, n, d], n = layout.shard_length().
// K/V are never expanded for GQA. Rank i of `sp` holds shard i. Differentiable in q, k, v; out is
// in q's dtype, partial results and gradients are accumulated in float32 (float64 for float64).
// `sp` must outlive the backward.
#pragma once
#include <torch/torch.h>

#include "parallel/sequence/sequence_layout.h"
#include "parallel/comm/communicator.h"

namespace loom {

torch::Tensor ring_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                             const SequenceLayout& layout, double scale, Communicator& sp);

}  // namespace loom
