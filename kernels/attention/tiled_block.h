// The block kernel on any device, tile by tile: attention of a block of query rows against a block
// of key rows under an AttentionMask. Memory is O(rows * head_dim + tile^2): keys are visited tile
// by tile with an online softmax, and the backward recomputes each tile's scores from the saved
// log-sum-exp. Tiles whose mask is empty (another document, or entirely in the future) are skipped
// without arithmetic; a tile the mask cuts is computed in strips of queries, each cut to the keys
// its rows see. On the CPU query tiles run in parallel over the intra-op threads, and float32 tile
// products and softmax steps go to tile_gemm and tile_softmax.
//
// Shapes and dtypes as block_attention.h, which is the entry point; these are its tiled halves.
#pragma once
#include <torch/torch.h>

#include "kernels/attention/attention_mask.h"
#include "kernels/attention/partials.h"

namespace loom {

// Tile rows (queries and keys alike). The backward prefers smaller tiles than the forward: it runs
// five matrix products per tile against the forward's two, and at head dimension 32 on the CPU
// 128-row tiles were the faster ones there while the forward preferred 256.
constexpr int64_t kDefaultTile = 256;
constexpr int64_t kDefaultBackwardTile = 128;

BlockOutput tiled_forward(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, const AttentionMask& mask,
                          double scale, int64_t tile);

// The backward given D = rowsum(dO * O) of the final output. Without kv_grads only dq is computed.
BlockGrads tiled_backward(const torch::Tensor& dout, const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                          const torch::Tensor& delta, const torch::Tensor& lse, const AttentionMask& mask, double scale,
                          int64_t tile, bool kv_grads);

}  // namespace loom
