// One layer of the Llama decoder: a mixing sublayer (self-attention, or a LaCT layer in its place)
// and a SwiGLU MLP, each behind a residual boundary:
//   mixed = attention(normed);          (h, normed) = residual_norm(h, mixed, post_attention_layernorm)
//   out = mlp(normed);                  (h, normed) = residual_norm(h, out, next_norm)
// `next_norm` is the next layer's input_layernorm, or the model's final norm after the last layer,
// so the second boundary already produces what the next layer reads. Both boundaries go through
// the layer's ResidualNorm (residual_norm.h), the seam tensor parallelism and TokenWeave replace.
#pragma once
#include <torch/torch.h>

#include <memory>

#include "runtime/core/config.h"
#include "runtime/model/attention.h"
#include "runtime/model/lact_layer.h"
#include "runtime/model/residual_norm.h"

namespace loom {

class MLPImpl : public torch::nn::Module {
 public:
  explicit MLPImpl(const ModelConfig& c);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
  // Keep gate and up, not silu(gate)·up and silu(gate): the backward recomputes the product
  // (selective activation checkpointing; parallelize() sets it).
  bool recompute_product = false;
};
TORCH_MODULE(MLP);

// What generation keeps per layer: the attention's K/V, or the LaCT layer's state.
struct LayerCache {
  torch::Tensor k, v;  // [Hkv, T, d] after RoPE
  LactCache lact;
};

class DecoderLayerImpl : public torch::nn::Module {
 public:
  DecoderLayerImpl(const ModelConfig& c, int64_t layer);

  Residual forward(const Residual& in, const SequenceShard& input, RMSNormImpl& next_norm);
  // Generation: `in` holds new tokens at `positions` (after the cached ones, `cache_positions`).
  Residual forward_cached(const Residual& in, const torch::Tensor& positions, const torch::Tensor& cache_positions,
                          LayerCache& cache, RMSNormImpl& next_norm);

  // The attention this layer's mixing sublayer computes with (its window attention for LaCT).
  std::shared_ptr<CoreAttention>& core_attention() { return self_attn ? self_attn->core : lact->core; }

  Attention self_attn{nullptr};  // exactly one of self_attn and lact is set
  LactLayer lact{nullptr};
  MLP mlp{nullptr};
  RMSNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
  std::shared_ptr<ResidualNorm> residual_norm;
  // Keep only the layer's inputs and recompute its forward in the backward (activation
  // checkpointing; parallelize() sets it).
  bool recompute = false;

 private:
  Residual finish(const Residual& in, const torch::Tensor& mixed, RMSNormImpl& next_norm);
};
TORCH_MODULE(DecoderLayer);

}  // namespace loom
