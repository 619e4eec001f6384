#include "runtime/model/fast_weights.h"

#include "runtime/model/swiglu_gate.h"

namespace loom {

torch::Tensor apply_fast_weights(const FastWeights& w, const torch::Tensor& x) {
  const auto h = swiglu_gate(torch::bmm(x, w.w0.transpose(1, 2)), torch::bmm(x, w.w2.transpose(1, 2)));
  return torch::bmm(h, w.w1.transpose(1, 2));
}

FastWeights descent_directions(const FastWeights& w, const torch::Tensor& k, const torch::Tensor& v,
                               const torch::Tensor& lr0, const torch::Tensor& lr1, const torch::Tensor& lr2) {
  const auto gate = torch::bmm(k, w.w0.transpose(1, 2));  // [B, n, dh]
  const auto up = torch::bmm(k, w.w2.transpose(1, 2));
  const auto pulled = torch::bmm(v, w.w1);                // V pulled back through W1: [B, n, dh]
  const auto [x0, x1, x2] = swiglu_gate_gradients(gate, up, pulled, lr0, lr1, lr2);
  return {torch::bmm(x0.transpose(1, 2), k),  // [B, dh, d]
          torch::bmm(v.transpose(1, 2), x1),  // [B, d, dh]
          torch::bmm(x2.transpose(1, 2), k)};
}

}  // namespace loom
