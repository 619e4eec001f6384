#include "runtime/model/core_attention.h"

#include "kernels/attention/local_attention.h"

namespace loom {

torch::Tensor LocalAttention::attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, double scale,
                                     const SequenceShard& input) {
  const auto& t = input.tokens;
  return local_attention(q, k, v, {t.positions, t.doc_ids, t.positions, t.doc_ids, true, window_}, scale);
}

}  // namespace loom
