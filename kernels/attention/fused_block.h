// The block kernel's GPU path: a fused attention kernel of ATen (CUDA, fp16/bf16) for the blocks
// whose mask it can express. Two are wired: FlashAttention-2 (LibTorch >= 2.3) and cuDNN's SDPA
// (LibTorch >= 2.5, where the build has cuDNN); both take the pairs of runs described below, except
// that sliding windows and single-row runs always go to FlashAttention-2.
//
// A block's query rows and key rows are cut into runs: maximal stretches of one document with
// consecutive positions (a zigzag shard is two runs per document it touches; padding belongs to no
// run). Every (query run, key run) pair is then empty (other document, entirely in the future or
// out of the window), fully visible, or the same run against itself (causal diagonal, with the
// window if there is one). The fused kernel computes the last two; the pairs of one query run are
// merged by LSE in float32. A pair of any other shape (runs that overlap without being equal, a
// window edge between two runs) is left to the tiled kernel (tiled_block.h) with the rest of its
// block: these functions then return nothing, and so they do on the CPU, for float32/float64, and
// on LibTorch builds without the kernels.
//
// Both kernels' backward reads O only to form D = rowsum(dO * O). Given O it is handed O (in the
// inputs' dtype); given only D (TokenRing ships D), O' = dO * D / rowsum(dO * dO), which has the
// same D.
#pragma once
#include <optional>

#include "kernels/attention/attention_mask.h"
#include "kernels/attention/partials.h"

namespace loom {

enum class FusedKernel { kFlash, kCudnn };

const char* fused_kernel_name(FusedKernel kernel);

// Whether this LibTorch build has the kernel at all, and for cuDNN whether cuDNN loads (the GPU
// tests assert the path is taken).
bool fused_kernel_available(FusedKernel kernel);

// The kernel the GPU path calls, process-wide. The default is cuDNN where it is available: on Hopper
// it is the faster of the two from a few thousand tokens on (docs/benchmarks/block-kernel.md, from
// loom bench block). Pairs cuDNN cannot take go to FlashAttention-2.
FusedKernel fused_kernel();
void set_fused_kernel(FusedKernel kernel);

std::optional<BlockOutput> fused_block_forward(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                               const AttentionMask& mask, double scale);

// What a backward knows of its rows' final output: O itself, or only D = rowsum(dO * O); the other
// is left undefined.
struct OutputOrDelta {
  torch::Tensor out, delta;
};

std::optional<BlockGrads> fused_block_backward(const torch::Tensor& dout, const torch::Tensor& q, const torch::Tensor& k,
                                               const torch::Tensor& v, const OutputOrDelta& output, const torch::Tensor& lse,
                                               const AttentionMask& mask, double scale);

}  // namespace loom
