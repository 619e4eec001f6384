// The attention sublayer of a Llama layer: q, k, v projections with grouped-query heads,
// rotate-half RoPE on the positions inside each document, the core attention (core_attention.h),
// and the output projection. Parameter names are Hugging Face's (q_proj, k_proj, v_proj, o_proj).
#pragma once
#include <torch/torch.h>

#include <memory>

#include "kernels/attention/prefix_attention.h"
#include "runtime/core/config.h"
#include "runtime/model/core_attention.h"

namespace loom {

class AttentionImpl : public torch::nn::Module {
 public:
  AttentionImpl(const ModelConfig& c);
  // x [n, D] of `input`'s tokens -> [n, D].
  torch::Tensor forward(const torch::Tensor& x, const SequenceShard& input);
  // Token splitting (token_weave.h): x [n, D] of the tokens of `half`, whose queries also see the
  // keys of `earlier` (the half before them in the sequence; null for the first half). Their own
  // keys and values (after RoPE) go to `keys`, for the half after them.
  torch::Tensor forward_half(const torch::Tensor& x, const SequenceShard& half, const KeyBlock* earlier, KeyBlock* keys);
  // Generation: x holds new tokens of one document at `positions`; their K/V are appended to the
  // cache ([Hkv, T, d] after RoPE, empty at first) and they attend to every cached token.
  torch::Tensor forward_cached(const torch::Tensor& x, const torch::Tensor& positions, torch::Tensor& cache_k,
                               torch::Tensor& cache_v, const torch::Tensor& cache_positions);

  std::shared_ptr<CoreAttention> core;  // LocalAttention unless a parallel plan installed another
  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
  // The query and KV heads this rank computes: all of them, or its share under tensor parallelism
  // (parallelize() cuts the projections to match).
  int64_t heads, kv_heads;

 private:
  struct Heads {
    torch::Tensor q, k, v;  // [H, n, d], the block kernel's layout, q and k after RoPE
  };
  Heads project(const torch::Tensor& x, const torch::Tensor& positions);
  torch::Tensor output(const torch::Tensor& out);  // [Hq, n, d] -> o_proj -> [n, D]

  int64_t head_dim_;
  double rope_theta_, scale_;
};
TORCH_MODULE(Attention);

}  // namespace loom
