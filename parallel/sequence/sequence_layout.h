// Where the tokens of one packed sequence live when it is sharded over N sequence-parallel ranks.
//
// zigzag (causal attention): the sequence, padded to a multiple of 2N, is cut into 2N chunks and
// rank r holds chunks r and 2N-1-r, so every rank has as many early (cheap) as late (expensive)
// query rows and every ring step costs every rank about the same. contiguous (non-causal): rank r
// holds chunk r of N. Padding tokens have document id -1: they see nothing and nobody sees them.
// Positions and document ids of every rank's tokens are known to every rank (they are small), so a
// rank can tell whether any (query shard, key shard) pair has a visible pair without asking.
#pragma once
#include <torch/torch.h>

#include "kernels/attention/attention_mask.h"

namespace loom {

// Consecutive rows of one rank's shard.
struct RowRange {
  int64_t begin = 0, count = 0;
  int64_t end() const { return begin + count; }
  bool empty() const { return count == 0; }
};

// The smallest range holding both.
RowRange span_of(const RowRange& a, const RowRange& b);

// The mask of `rows` of the mask's queries.
AttentionMask query_rows(const AttentionMask& m, const RowRange& rows);

struct SequenceLayout {
  bool causal = true;          // zigzag when causal, contiguous otherwise
  int64_t ranks = 1;
  int64_t length = 0;          // unpadded
  int64_t padded_length = 0;
  torch::Tensor index;         // int64 [ranks, shard]: global token index of each rank's tokens (>= length: padding)
  torch::Tensor pos, doc;      // int64 [ranks, shard]
  int64_t window = 0;          // > 0: the masks are sliding windows of this span (LaCT layers)

  int64_t shard_length() const { return padded_length / ranks; }
  // The mask between rank q_rank's queries and rank k_rank's keys.
  AttentionMask mask(int64_t q_rank, int64_t k_rank) const;
  // True when rank q_rank's queries see at least one of rank k_rank's keys.
  bool visible(int64_t q_rank, int64_t k_rank) const;
  // The smallest range of rank q_rank's query rows holding every row that sees one of rank
  // k_rank's keys (empty when none does). A zigzag shard's first chunk sees nothing of a later rank.
  RowRange query_rows_seen(int64_t q_rank, int64_t k_rank) const;
  // How many hops round the ring (to rank + 1, + 2, ...) each rank's keys must travel to meet
  // every query that sees them: the largest t < ranks with visible(r + t mod ranks, r), 0 when
  // only their own queries or none see them. Pass-KV stops a K/V shard there: packed documents
  // that stay inside a rank's chunks never leave it.
  std::vector<int64_t> key_reach() const;
  // Rank `rank`'s part of a tensor laid out along `dim` over the whole (unpadded) sequence; padding
  // rows are filled with `pad`.
  torch::Tensor take(const torch::Tensor& t, int64_t dim, int64_t rank, double pad = 0) const;
  // The layout's own per-rank rows ([ranks, shard], pos or doc) in sequence order, padding last:
  // [padded_length].
  torch::Tensor in_sequence_order(const torch::Tensor& per_rank) const;
};

// positions, doc_ids: int64 [length] of the whole packed sequence.
SequenceLayout make_sequence_layout(const torch::Tensor& positions, const torch::Tensor& doc_ids, int64_t ranks, bool causal);

}  // namespace loom
