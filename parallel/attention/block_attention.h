// The block kernel every attention algorithm in Loom is built from: attention of a block of query
// rows against a block of key rows, under a mask that is causal on global positions and never
// crosses a document. Local attention calls it once; ring and TokenRing call it per ring step and
// merge the partial results with merge_partials.
//
// Memory is O(rows * head_dim + tile^2): keys are visited tile by tile with an online softmax, and
// the backward recomputes each tile's scores from the saved log-sum-exp. Tiles whose mask is empty
// (another document, or entirely in the future) are skipped without any arithmetic.
//
// Shapes: q [Hq, Nq, d]; k, v [Hkv, Nk, d] with Hkv dividing Hq (GQA: K/V are never expanded).
// out and lse are kept in the accumulation dtype: float64 for float64 inputs, float32 otherwise.
// A row with no visible key has out = 0 and lse = -inf.
//
// On a GPU with fp16/bf16 inputs, blocks whose mask a fused kernel can express go to ATen's
// FlashAttention-2 or cuDNN kernels instead (flash_block.h); everything else, and every CPU call, is
// tiled here.
#pragma once
#include <torch/torch.h>

namespace loom {

struct AttentionMask {
  torch::Tensor q_pos, q_doc;  // int64 [Nq]
  torch::Tensor k_pos, k_doc;  // int64 [Nk]
  bool causal = true;          // key visible only if k_pos <= q_pos (same document)
  int64_t window = 0;          // > 0: and only if q_pos - k_pos < window (sliding window; causal only)

  // Queries and keys are the same tokens (local attention over a packed sequence).
  static AttentionMask self(const torch::Tensor& positions, const torch::Tensor& doc_ids, bool causal = true);
};

struct BlockOutput {
  torch::Tensor out;  // [Hq, Nq, d], accumulation dtype
  torch::Tensor lse;  // [Hq, Nq], accumulation dtype, natural log
};

struct BlockGrads {
  torch::Tensor dq, dk, dv;  // accumulation dtype
};

// Tile rows (queries and keys alike). The backward prefers smaller tiles than the forward: with its
// five matmuls per tile against the forward's two, 128-row tiles ran 5-15% faster there at head
// dim 32 on the CPU (1K-8K tokens), where the forward ran 0-7% slower.
constexpr int64_t kDefaultTile = 256;
constexpr int64_t kDefaultBackwardTile = 128;

BlockOutput block_forward(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                          const AttentionMask& mask, double scale, int64_t tile = kDefaultTile);

// `out` and `lse` are the final (fully merged) results of these query rows: then the gradients of
// each block are exact partial sums of the gradients of the whole attention.
BlockGrads block_backward(const torch::Tensor& dout, const torch::Tensor& q, const torch::Tensor& k,
                          const torch::Tensor& v, const torch::Tensor& out, const torch::Tensor& lse,
                          const AttentionMask& mask, double scale, int64_t tile = kDefaultBackwardTile);

// D = rowsum(dO * O) per row, in out's dtype: all the backward needs of the output.
torch::Tensor output_delta(const torch::Tensor& dout, const torch::Tensor& out);

// block_backward given D instead of O (TokenRing ships D, n·H values, instead of O, n·H·d).
// Without kv_grads only dq is computed (dk, dv undefined): two of the five matmuls per tile fewer,
// for keys whose gradient nobody reads (SpaCO's unvisited chunks).
BlockGrads block_backward_from_delta(const torch::Tensor& dout, const torch::Tensor& q, const torch::Tensor& k,
                                     const torch::Tensor& v, const torch::Tensor& delta, const torch::Tensor& lse,
                                     const AttentionMask& mask, double scale, int64_t tile = kDefaultBackwardTile,
                                     bool kv_grads = true);

// Combines the results of the same rows over two disjoint key sets, in the overflow-free form
// out = o1 - sigmoid(lse2 - lse1) (o1 - o2), lse = lse1 - logsigmoid(lse1 - lse2); rows empty on
// one side take the other side unchanged.
BlockOutput merge_partials(const BlockOutput& a, const BlockOutput& b);

// The partial result of q's rows over no keys yet: out 0, lse -inf, in the accumulation dtype.
BlockOutput empty_partial(const torch::Tensor& q);

// The number of (query, key) pairs the mask lets through: the attention FLOPs are 4 * d * Hq * pairs.
int64_t visible_pairs(const AttentionMask& mask);

// The keys the mask lets at least one query see: int64 indices into the key rows, ascending.
torch::Tensor visible_keys(const AttentionMask& mask);
// The queries that see at least one key: int64 indices into the query rows, ascending.
torch::Tensor visible_queries(const AttentionMask& mask);

}  // namespace loom
