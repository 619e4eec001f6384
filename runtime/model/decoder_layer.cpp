#include "runtime/model/decoder_layer.h"

#include "runtime/model/normal_linear.h"
#include "runtime/model/recompute.h"

namespace loom {

MLPImpl::MLPImpl(const ModelConfig& c) {
  gate_proj = register_module("gate_proj", normal_linear(c.d_model, c.ffn_dim(), c.init_std));
  up_proj = register_module("up_proj", normal_linear(c.d_model, c.ffn_dim(), c.init_std));
  down_proj = register_module("down_proj", normal_linear(c.ffn_dim(), c.d_model, c.init_std));
}

namespace {

std::vector<torch::Tensor> swiglu(const std::vector<torch::Tensor>& gate_up) { return {torch::silu(gate_up[0]) * gate_up[1]}; }

}  // namespace

torch::Tensor MLPImpl::forward(const torch::Tensor& x) {
  const std::vector<torch::Tensor> gate_up{gate_proj(x), up_proj(x)};
  if (!recompute_product) return down_proj(swiglu(gate_up)[0]);
  return linear_of_recomputed(swiglu, gate_up, down_proj->weight);  // Loom's linears have no bias
}

DecoderLayerImpl::DecoderLayerImpl(const ModelConfig& c, int64_t layer) : residual_norm(std::make_shared<LocalResidualNorm>()) {
  if (c.is_lact_layer(layer)) {
    lact = register_module("lact", LactLayer(c));
  } else {
    self_attn = register_module("self_attn", Attention(c));
  }
  mlp = register_module("mlp", MLP(c));
  input_layernorm = register_module("input_layernorm", RMSNorm(c.d_model, c.norm_eps));
  post_attention_layernorm = register_module("post_attention_layernorm", RMSNorm(c.d_model, c.norm_eps));
}

Residual DecoderLayerImpl::forward(const Residual& in, const SequenceShard& input, RMSNormImpl& next_norm) {
  return finish(in, lact ? lact->forward(in.normed, input) : self_attn->forward(in.normed, input), next_norm);
}

Residual DecoderLayerImpl::forward_cached(const Residual& in, const torch::Tensor& positions,
                                          const torch::Tensor& cache_positions, LayerCache& cache, RMSNormImpl& next_norm) {
  const auto mixed = lact ? lact->forward_cached(in.normed, positions, cache.lact)
                          : self_attn->forward_cached(in.normed, positions, cache.k, cache.v, cache_positions);
  return finish(in, mixed, next_norm);
}

Residual DecoderLayerImpl::finish(const Residual& in, const torch::Tensor& mixed, RMSNormImpl& next_norm) {
  const Residual mid = residual_norm->apply(in.h, mixed, *post_attention_layernorm);
  return residual_norm->apply(mid.h, mlp(mid.normed), next_norm);
}

}  // namespace loom
