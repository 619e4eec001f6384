// The block kernel's GPU path: ATen's FlashAttention-2 kernels (LibTorch >= 2.1, CUDA, fp16/bf16)
// for the blocks whose mask FlashAttention can express.
//
// A block's query rows and key rows are cut into runs: maximal stretches of one document with
// consecutive positions (a zigzag shard is two runs per document it touches; padding belongs to no
// run). Every (query run, key run) pair is then empty (other document, or entirely in the future),
// fully visible, or the same run against itself (causal diagonal). FlashAttention computes the last
// two; the pairs of one query run are merged by LSE in float32. A pair of any other shape (runs that
// overlap without being equal) is left to the tiled kernel of block_attention.cpp: these functions
// then return nothing, and so they do on the CPU, for float32/float64, and on LibTorch builds
// without the kernels.
//
// The backward gets D = rowsum(dO * O) instead of O (TokenRing ships D); FlashAttention's backward
// reads O only to form that sum, so it is handed O' = dO * D / rowsum(dO * dO), which has the same D.
#pragma once
#include <optional>

#include "parallel/attention/block_attention.h"

namespace loom {

// Whether this LibTorch build has the kernels at all (the GPU tests assert the path is taken).
bool flash_kernels_compiled();

std::optional<BlockOutput> flash_block_forward(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                               const AttentionMask& mask, double scale);

std::optional<BlockGrads> flash_block_backward(const torch::Tensor& dout, const torch::Tensor& q, const torch::Tensor& k,
                                               const torch::Tensor& v, const torch::Tensor& delta, const torch::Tensor& lse,
                                               const AttentionMask& mask, double scale);

}  // namespace loom
