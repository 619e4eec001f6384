#include "parallel/sequence/sequence_layout.h"

#include "runtime/core/error.h"

namespace loom {

SequenceLayout make_sequence_layout(const torch::Tensor& positions, const torch::Tensor& doc_ids, int64_t ranks, bool causal) {
  check(ranks >= 1, "a sequence layout needs at least one rank");
  SequenceLayout l;
  l.causal = causal;
  l.ranks = ranks;
  l.length = positions.size(0);
  const int64_t chunks = causal ? 2 * ranks : ranks;
  l.padded_length = (l.length + chunks - 1) / chunks * chunks;
  const int64_t chunk = l.padded_length / chunks;
  auto index = torch::empty({ranks, l.padded_length / ranks}, torch::kInt64);
  for (int64_t r = 0; r < ranks; ++r) {
    auto row = index[r];
    row.narrow(0, 0, chunk).copy_(torch::arange(r * chunk, (r + 1) * chunk, torch::kInt64));
    if (causal) row.narrow(0, chunk, chunk).copy_(torch::arange((chunks - 1 - r) * chunk, (chunks - r) * chunk, torch::kInt64));
  }
  l.index = index;
  const auto pad = l.padded_length - l.length;
  const auto all_pos = torch::cat({positions.to(torch::kInt64), torch::zeros({pad}, torch::kInt64)});
  const auto all_doc = torch::cat({doc_ids.to(torch::kInt64), torch::full({pad}, -1, torch::kInt64)});
  l.pos = all_pos.index_select(0, index.reshape(-1)).view_as(index);
  l.doc = all_doc.index_select(0, index.reshape(-1)).view_as(index);
  return l;
}

RowRange span_of(const RowRange& a, const RowRange& b) {
  if (a.empty()) return b;
  if (b.empty()) return a;
  const int64_t begin = std::min(a.begin, b.begin);
  return {begin, std::max(a.end(), b.end()) - begin};
}

AttentionMask query_rows(const AttentionMask& m, const RowRange& rows) {
  return {m.q_pos.narrow(0, rows.begin, rows.count), m.q_doc.narrow(0, rows.begin, rows.count), m.k_pos, m.k_doc, m.causal,
          m.window};
}

AttentionMask SequenceLayout::mask(int64_t q_rank, int64_t k_rank) const {
  return {pos[q_rank], doc[q_rank], pos[k_rank], doc[k_rank], causal, window};
}

bool SequenceLayout::visible(int64_t q_rank, int64_t k_rank) const { return visible_pairs(mask(q_rank, k_rank)) > 0; }

RowRange SequenceLayout::query_rows_seen(int64_t q_rank, int64_t k_rank) const {
  const torch::Tensor rows = visible_queries(mask(q_rank, k_rank));
  if (rows.numel() == 0) return {};
  const int64_t first = rows[0].item<int64_t>(), last = rows[-1].item<int64_t>();
  return {first, last - first + 1};
}

std::vector<int64_t> SequenceLayout::key_reach() const {
  std::vector<int64_t> reach(ranks, 0);
  for (int64_t r = 0; r < ranks; ++r)
    for (int64_t t = ranks - 1; t > 0 && reach[r] == 0; --t)
      if (visible((r + t) % ranks, r)) reach[r] = t;
  return reach;
}

torch::Tensor SequenceLayout::take(const torch::Tensor& t, int64_t dim, int64_t rank, double pad_value) const {
  std::vector<int64_t> pad_shape(t.sizes().begin(), t.sizes().end());
  pad_shape[dim] = padded_length - length;
  const auto padded = torch::cat({t, torch::full(pad_shape, pad_value, t.options())}, dim);
  return padded.index_select(dim, index[rank].to(t.device()));
}

torch::Tensor SequenceLayout::in_sequence_order(const torch::Tensor& per_rank) const {
  auto whole = torch::empty({padded_length}, per_rank.options());
  whole.index_put_({index.reshape(-1)}, per_rank.reshape(-1));
  return whole;
}

}  // namespace loom
