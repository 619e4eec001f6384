#include "runtime/model/attention.h"

#include <cmath>

#include "kernels/attention/block_attention.h"
#include "runtime/model/normal_linear.h"
#include "runtime/model/rope.h"

namespace loom {

AttentionImpl::AttentionImpl(const ModelConfig& c)
    : core(std::make_shared<LocalAttention>()),
      heads(c.n_heads),
      kv_heads(c.n_kv_heads),
      head_dim_(c.head_dim()),
      rope_theta_(c.rope_theta),
      scale_(1.0 / std::sqrt(static_cast<double>(c.head_dim()))) {
  q_proj = register_module("q_proj", normal_linear(c.d_model, heads * head_dim_, c.init_std));
  k_proj = register_module("k_proj", normal_linear(c.d_model, kv_heads * head_dim_, c.init_std));
  v_proj = register_module("v_proj", normal_linear(c.d_model, kv_heads * head_dim_, c.init_std));
  o_proj = register_module("o_proj", normal_linear(heads * head_dim_, c.d_model, c.init_std));
}

AttentionImpl::Heads AttentionImpl::project(const torch::Tensor& x, const torch::Tensor& positions) {
  const int64_t n = x.size(0);
  // [N, H, d] -> RoPE on the positions inside each document -> [H, N, d].
  return {apply_rope(q_proj(x).view({n, heads, head_dim_}), positions, rope_theta_).transpose(0, 1),
          apply_rope(k_proj(x).view({n, kv_heads, head_dim_}), positions, rope_theta_).transpose(0, 1),
          v_proj(x).view({n, kv_heads, head_dim_}).transpose(0, 1)};
}

torch::Tensor AttentionImpl::output(const torch::Tensor& out) {
  return o_proj(out.transpose(0, 1).reshape({out.size(1), heads * head_dim_}));
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x, const SequenceShard& input) {
  const Heads h = project(x, input.tokens.positions);
  return output(core->attend(h.q, h.k, h.v, scale_, input));
}

torch::Tensor AttentionImpl::forward_half(const torch::Tensor& x, const SequenceShard& half, const KeyBlock* earlier,
                                          KeyBlock* keys) {
  const auto& t = half.tokens;
  const Heads h = project(x, t.positions);
  *keys = {h.k, h.v, t.positions, t.doc_ids};
  if (!earlier) return output(core->attend(h.q, h.k, h.v, scale_, half));
  return output(prefix_attention(h.q, h.k, h.v, t.positions, t.doc_ids, {*earlier}, 1, scale_));
}

torch::Tensor AttentionImpl::forward_cached(const torch::Tensor& x, const torch::Tensor& positions, torch::Tensor& cache_k,
                                            torch::Tensor& cache_v, const torch::Tensor& cache_positions) {
  const Heads h = project(x, positions);
  cache_k = cache_k.defined() ? torch::cat({cache_k, h.k}, 1) : h.k;
  cache_v = cache_v.defined() ? torch::cat({cache_v, h.v}, 1) : h.v;
  const AttentionMask mask{positions, torch::zeros_like(positions), cache_positions, torch::zeros_like(cache_positions), true};
  return output(block_forward(h.q, cache_k, cache_v, mask, scale_).out.to(x.scalar_type()));
}

}  // namespace loom
