// Which (query, key) pairs attention lets through: causal on positions inside documents, never
// across documents, optionally within a sliding window. Every attention function of Loom takes
// its mask in this form, so positions and document ids travel with the rows and no caller builds
// an [Nq, Nk] matrix.
#pragma once
#include <torch/torch.h>

#include <vector>

namespace loom {

struct AttentionMask {
  torch::Tensor q_pos, q_doc;  // int64 [Nq]; document -1: padding, sees nothing
  torch::Tensor k_pos, k_doc;  // int64 [Nk]; document -1: padding, seen by nothing
  bool causal = true;          // key visible only if k_pos <= q_pos (same document)
  int64_t window = 0;          // > 0: and only if q_pos - k_pos < window (sliding window; causal only)

  // Queries and keys are the same tokens (local attention over a packed sequence).
  static AttentionMask self(const torch::Tensor& positions, const torch::Tensor& doc_ids, bool causal = true);
};

// The number of (query, key) pairs the mask lets through: the attention FLOPs are 4 * d * Hq * pairs.
int64_t visible_pairs(const AttentionMask& mask);
// The same per query row.
std::vector<int64_t> visible_pairs_per_query(const AttentionMask& mask);

// The keys the mask lets at least one query see: int64 indices into the key rows, ascending.
torch::Tensor visible_keys(const AttentionMask& mask);
// The queries that see at least one key: int64 indices into the query rows, ascending.
torch::Tensor visible_queries(const AttentionMask& mask);

}  // namespace loom
