// LaCT's language-model layer (Zhang et al., "Test-Time Training Done Right", 2025: the reference
// code's LaCTSWIGLULayer), in place of a Llama layer's self-attention:
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

#include <functional>
#include <memory>

#include "runtime/core/config.h"
#include "runtime/model/core_attention.h"
#include "runtime/model/fast_weight_scan.h"

namespace loom {

// What generation carries from token to token for one LaCT layer: the window's keys and values
// (after RoPE), the fast weights with their momentum, and the chunk in progress (its tokens' fast
// keys, values, rates and β, which update the weights once the chunk is complete).
struct LactCache {
  torch::Tensor k, v, positions;  // the last window - 1 tokens: [heads, T, head dim], [T]
  FastWeightState fast;           // undefined weights before the first token
  std::vector<torch::Tensor> pending;  // fk, fv, lr0, lr1, lr2[, β] of the chunk in progress, [B, n, ...]
  int64_t pending_tokens = 0;
};

// The fast-weight branch's inputs for N tokens: per fast head, [heads, N, d] and [heads, N].
struct FastInputs {
  torch::Tensor q, k, v, lr0, lr1, lr2, beta;  // beta undefined without momentum
};

class LactLayerImpl : public torch::nn::Module {
 public:
  explicit LactLayerImpl(const ModelConfig& c);
  // x [n, D] (after the block's RMSNorm) of `input`'s tokens -> [n, D]. Context parallelism (input
  // sharded): every fast-weight update sums the ranks' parts through `update_sum`.
  torch::Tensor forward(const torch::Tensor& x, const SequenceShard& input);
  // The same over a whole packed sequence on this rank: positions and doc ids [N].
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& positions, const torch::Tensor& doc_ids);
  // Generation: x [n, D] are the next tokens of one document at `positions`; reads and extends the
  // cache, and equals the rows of forward() over the whole document so far.
  torch::Tensor forward_cached(const torch::Tensor& x, const torch::Tensor& positions, LactCache& cache);
  // The initial fast weights every document starts from: [heads, ...] (low rank + 0.5 I, or full).
  FastWeights initial_weights() const;

  // The window attention: LocalAttention(window) unless a parallel plan installed another.
  std::shared_ptr<CoreAttention> core;
  // Sums a tensor over the ranks a shard is split over (the sp group, or the ring it names),
  // differentiably; installed by parallelize().
  std::function<torch::Tensor(const torch::Tensor&, const Ring*)> update_sum;
  torch::nn::Linear qkv{nullptr}, o_proj{nullptr}, rates{nullptr}, momentum{nullptr}, ttt_scale{nullptr};

 private:
  torch::Tensor rope_heads(const torch::Tensor& t, const torch::Tensor& positions) const;
  FastInputs fast_inputs(const torch::Tensor& x, const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                         const torch::Tensor& positions) const;
  // Per-head RMSNorm, times the per-token scale, heads merged: [heads, N, d] -> [N, D].
  torch::Tensor fast_output(const torch::Tensor& x, const torch::Tensor& out) const;
  FastWeights initial_in(torch::ScalarType dtype) const;
  FastWeightScanOptions scan_options() const { return {lact_.chunk, lact_.muon, true, lact_.checkpoint}; }

  LactConfig lact_;
  int64_t d_model_, attn_heads_, heads_, fast_dim_, hidden_;  // heads_: fast-weight heads
  double rope_theta_, eps_;
  torch::Tensor q_scale_, q_offset_, k_scale_, k_offset_, fast_norm_;
  torch::Tensor w0_, w2_, w0_left_, w0_right_, w2_left_, w2_right_, w1_;
};
TORCH_MODULE(LactLayer);

}  // namespace loom
