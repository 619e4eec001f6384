#include "parallel/tensor/token_weave.h"

#include <cmath>

#include "kernels/attention/attention_mask.h"

namespace loom {

TokenSplit split_tokens(const torch::Tensor& positions, const torch::Tensor& doc_ids, int64_t tp, int64_t min_tokens,
                        const WeaveCost& cost) {
  const int64_t n = positions.size(0);
  if (n < std::max<int64_t>(min_tokens, 2 * tp)) return {};
  // Work of the tokens before each row: half A's work is before[x], half B's before[n] - before[x].
  const auto pairs = visible_pairs_per_query(AttentionMask::self(positions, doc_ids));
  std::vector<double> before(static_cast<size_t>(n) + 1, 0.0);
  for (int64_t i = 0; i < n; ++i)
    before[i + 1] = before[i] + cost.per_token + cost.per_pair * static_cast<double>(pairs[static_cast<size_t>(i)]);
  int64_t best = tp;
  for (int64_t x = tp; x <= n - tp; x += tp)
    if (std::abs(2 * before[x] - before[n]) < std::abs(2 * before[best] - before[n])) best = x;
  return {best};
}

}  // namespace loom
