// The block kernel every attention algorithm in Loom is built from: attention of a block of query
// rows against a block of key rows, under a mask that is causal on positions inside documents and
// never crosses a document. Local attention calls it once; ring and TokenRing call it per ring
// step and merge the partial results with merge_partials (partials.h).
//
// Shapes: q [Hq, Nq, d]; k, v [Hkv, Nk, d] with Hkv dividing Hq (GQA: K/V are never expanded).
// out and lse are kept in the accumulation dtype: float64 for float64 inputs, float32 otherwise.
// A row with no visible key has out = 0 and lse = -inf.
//
// Two implementations: on a GPU with fp16/bf16 inputs, blocks whose mask a fused kernel can express
// go to ATen's cuDNN or FlashAttention-2 kernels (fused_block.h); everything else, and every CPU
// call, runs the tiled kernel (tiled_block.h). Both are exact partials, so callers never ask which.
#pragma once
#include <torch/torch.h>

#include "kernels/attention/attention_mask.h"
#include "kernels/attention/partials.h"
#include "kernels/attention/tiled_block.h"

namespace loom {

BlockOutput block_forward(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                          const AttentionMask& mask, double scale, int64_t tile = kDefaultTile);

// `out` and `lse` are the final (fully merged) results of these query rows: then the gradients of
// each block are exact partial sums of the gradients of the whole attention.
BlockGrads block_backward(const torch::Tensor& dout, const torch::Tensor& q, const torch::Tensor& k,
                          const torch::Tensor& v, const torch::Tensor& out, const torch::Tensor& lse,
                          const AttentionMask& mask, double scale, int64_t tile = kDefaultBackwardTile);

// block_backward given D = rowsum(dO * O) instead of O (TokenRing ships D, n·H values, instead of O,
// n·H·d). Without kv_grads only dq is computed (dk, dv undefined): two of the five matmuls per tile
// fewer, for keys whose gradient nobody reads (SpaCO's unvisited chunks).
BlockGrads block_backward_from_delta(const torch::Tensor& dout, const torch::Tensor& q, const torch::Tensor& k,
                                     const torch::Tensor& v, const torch::Tensor& delta, const torch::Tensor& lse,
                                     const AttentionMask& mask, double scale, int64_t tile = kDefaultBackwardTile,
                                     bool kv_grads = true);

}  // namespace loom
