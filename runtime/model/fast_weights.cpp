#include "runtime/model/fast_weights.h"

namespace loom {
namespace {

// d/dx SiLU(x) = σ(x) (1 + x (1 - σ(x))).
torch::Tensor silu_derivative(const torch::Tensor& x) {
  const auto s = torch::sigmoid(x);
  return s * (1 + x * (1 - s));
}

}  // namespace

torch::Tensor apply_fast_weights(const FastWeights& w, const torch::Tensor& x) {
  const auto h = torch::silu(torch::bmm(x, w.w0.transpose(1, 2))) * torch::bmm(x, w.w2.transpose(1, 2));
  return torch::bmm(h, w.w1.transpose(1, 2));
}

FastWeights descent_directions(const FastWeights& w, const torch::Tensor& k, const torch::Tensor& v,
                               const torch::Tensor& lr0, const torch::Tensor& lr1, const torch::Tensor& lr2) {
  const auto gate = torch::bmm(k, w.w0.transpose(1, 2));  // [B, n, dh]
  const auto up = torch::bmm(k, w.w2.transpose(1, 2));
  const auto hidden = torch::silu(gate) * up;
  const auto pulled = torch::bmm(v, w.w1);                // V pulled back through W1: [B, n, dh]
  const auto d_gate = pulled * up * silu_derivative(gate);
  const auto d_up = pulled * torch::silu(gate);
  const auto rate = [](const torch::Tensor& lr) { return lr.unsqueeze(-1); };
  return {torch::bmm((d_gate * rate(lr0)).transpose(1, 2), k),  // [B, dh, d]
          torch::bmm(v.transpose(1, 2), hidden * rate(lr1)),    // [B, d, dh]
          torch::bmm((d_up * rate(lr2)).transpose(1, 2), k)};
}

}  // namespace loom
