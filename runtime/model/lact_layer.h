// LaCT's language-model layer (Zhang et al., "Test-Time Training Done Right", 2025; seco-lact.md
// B.5), in place of a Llama layer's self-attention:
//   q, k, v = split(qkv(x))                                     one projection for both branches
//   attention: RoPE(q), RoPE(k), v -> causal sliding-window attention (block kernel, documents kept apart)
//   fast weights: q' = SiLU(q s_q + o_q), k' = SiLU(k s_k + o_k), v' = SiLU(v), L2-normalised per
//     fast head (q', k'), RoPE on the attention heads' layout; per-token rates softplus(Linear(x) +
//     softplus^-1(base_lr)) and momentum sigmoid(Linear(x)); the causal chunk loop of
//     fast_weight_scan.h; per-head RMSNorm, times SiLU(Linear(x)) per token and head
//   out = o_proj(attention + fast weights)
// Rates, momentum and the fast-weight state run in float32 (float64 for float64 inputs).
#pragma once
#include <torch/torch.h>

#include "runtime/core/config.h"
#include "runtime/model/fast_weights.h"

namespace loom {

class LactLayerImpl : public torch::nn::Module {
 public:
  explicit LactLayerImpl(const ModelConfig& c);
  // x [N, D] (after the block's RMSNorm), positions and doc ids [N] of one packed sequence -> [N, D].
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& positions, const torch::Tensor& doc_ids);
  // The initial fast weights every document starts from: [heads, ...] (low rank + 0.5 I, or full).
  FastWeights initial_weights() const;

  torch::nn::Linear qkv{nullptr}, o_proj{nullptr}, rates{nullptr}, momentum{nullptr}, ttt_scale{nullptr};

 private:
  torch::Tensor fast_weight_branch(const torch::Tensor& x, const torch::Tensor& q, const torch::Tensor& k,
                                   const torch::Tensor& v, const torch::Tensor& positions, const torch::Tensor& doc_ids);

  LactConfig lact_;
  int64_t d_model_, attn_heads_, heads_, fast_dim_, hidden_;  // heads_: fast-weight heads
  double rope_theta_, eps_;
  torch::Tensor q_scale_, q_offset_, k_scale_, k_offset_, fast_norm_;
  torch::Tensor w0_, w2_, w0_left_, w0_right_, w2_left_, w2_right_, w1_;
};
TORCH_MODULE(LactLayer);

}  // namespace loom
