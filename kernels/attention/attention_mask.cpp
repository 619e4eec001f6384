#include "kernels/attention/attention_mask.h"

#include <algorithm>
#include <map>
#include <numeric>
#include <vector>

namespace loom {
namespace {

// Sorted positions per document of the rows that have one (padding, document -1, has none).
std::map<int64_t, std::vector<int64_t>> positions_by_doc(const torch::Tensor& pos, const torch::Tensor& doc) {
  std::map<int64_t, std::vector<int64_t>> by_doc;
  const auto p = pos.accessor<int64_t, 1>(), d = doc.accessor<int64_t, 1>();
  for (int64_t i = 0; i < pos.size(0); ++i)
    if (d[i] >= 0) by_doc[d[i]].push_back(p[i]);
  for (auto& [id, positions] : by_doc) std::sort(positions.begin(), positions.end());
  return by_doc;
}

}  // namespace

std::vector<int64_t> visible_pairs_per_query(const AttentionMask& m) {
  const auto keys_by_doc = positions_by_doc(m.k_pos, m.k_doc);
  std::vector<int64_t> pairs(m.q_pos.size(0), 0);
  const auto qp = m.q_pos.accessor<int64_t, 1>(), qd = m.q_doc.accessor<int64_t, 1>();
  for (int64_t i = 0; i < m.q_pos.size(0); ++i) {
    auto it = keys_by_doc.find(qd[i]);
    if (qd[i] < 0 || it == keys_by_doc.end()) continue;
    const auto& pos = it->second;
    const auto last = m.causal ? std::upper_bound(pos.begin(), pos.end(), qp[i]) : pos.end();
    const auto first = m.window > 0 ? std::lower_bound(pos.begin(), pos.end(), qp[i] - m.window + 1) : pos.begin();
    pairs[i] = std::max<int64_t>(0, last - first);
  }
  return pairs;
}

AttentionMask AttentionMask::self(const torch::Tensor& positions, const torch::Tensor& doc_ids, bool causal) {
  return {positions, doc_ids, positions, doc_ids, causal};
}

int64_t visible_pairs(const AttentionMask& m) {
  const auto pairs = visible_pairs_per_query(m);
  return std::accumulate(pairs.begin(), pairs.end(), int64_t{0});
}

torch::Tensor visible_queries(const AttentionMask& m) {
  const auto pairs = visible_pairs_per_query(m);
  std::vector<int64_t> rows;
  for (size_t i = 0; i < pairs.size(); ++i)
    if (pairs[i] > 0) rows.push_back(static_cast<int64_t>(i));
  return torch::tensor(rows, torch::kInt64);
}

torch::Tensor visible_keys(const AttentionMask& m) {
  const auto queries_by_doc = positions_by_doc(m.q_pos, m.q_doc);
  std::vector<int64_t> keys;
  const auto kp = m.k_pos.accessor<int64_t, 1>(), kd = m.k_doc.accessor<int64_t, 1>();
  for (int64_t j = 0; j < m.k_pos.size(0); ++j) {
    auto it = queries_by_doc.find(kd[j]);
    if (kd[j] < 0 || it == queries_by_doc.end()) continue;
    // The earliest query at or after the key decides: it is the one most likely inside the window.
    const auto& pos = it->second;
    const auto first = m.causal ? std::lower_bound(pos.begin(), pos.end(), kp[j]) : pos.begin();
    if (first != pos.end() && (m.window == 0 || *first - kp[j] < m.window)) keys.push_back(j);
  }
  return torch::tensor(keys, torch::kInt64);
}

}  // namespace loom
