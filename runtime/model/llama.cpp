#include "runtime/model/llama.h"

#include <cmath>

#include "kernels/rms_norm.h"
#include "runtime/core/error.h"
#include "parallel/attention/local_attention.h"
#include "runtime/model/normal_linear.h"
#include "runtime/model/rope.h"

namespace loom {

RMSNormImpl::RMSNormImpl(int64_t dim, double eps) : eps_(eps) {
  weight = register_parameter("weight", torch::ones({dim}));
}

torch::Tensor RMSNormImpl::forward(const torch::Tensor& x) { return rms_norm(x, weight, eps_); }

AttentionImpl::AttentionImpl(const ModelConfig& c, int64_t layer)
    : layer_(layer), n_heads_(c.n_heads), n_kv_heads_(c.n_kv_heads), head_dim_(c.head_dim()), rope_theta_(c.rope_theta) {
  q_proj = register_module("q_proj", normal_linear(c.d_model, n_heads_ * head_dim_, c.init_std));
  k_proj = register_module("k_proj", normal_linear(c.d_model, n_kv_heads_ * head_dim_, c.init_std));
  v_proj = register_module("v_proj", normal_linear(c.d_model, n_kv_heads_ * head_dim_, c.init_std));
  o_proj = register_module("o_proj", normal_linear(n_heads_ * head_dim_, c.d_model, c.init_std));
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& positions,
                                     const torch::Tensor& doc_ids, torch::Tensor* cache_k,
                                     torch::Tensor* cache_v, const torch::Tensor& cache_positions, const AttendFn* attend) {
  const int64_t n = x.size(0);
  const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim_));
  // [N, H, d] -> RoPE on global positions -> [H, N, d], the block kernel's layout.
  auto q = apply_rope(q_proj(x).view({n, n_heads_, head_dim_}), positions, rope_theta_).transpose(0, 1);
  auto k = apply_rope(k_proj(x).view({n, n_kv_heads_, head_dim_}), positions, rope_theta_).transpose(0, 1);
  auto v = v_proj(x).view({n, n_kv_heads_, head_dim_}).transpose(0, 1);
  torch::Tensor out;
  if (cache_k) {
    *cache_k = cache_k->defined() ? torch::cat({*cache_k, k}, 1) : k;
    *cache_v = cache_v->defined() ? torch::cat({*cache_v, v}, 1) : v;
    const AttentionMask mask{positions, doc_ids, cache_positions, torch::zeros_like(cache_positions), true};
    out = block_forward(q, *cache_k, *cache_v, mask, scale).out.to(x.scalar_type());
  } else if (attend) {
    out = (*attend)(layer_, q, k, v, scale);
  } else {
    out = local_attention(q, k, v, AttentionMask::self(positions, doc_ids), scale);
  }
  return o_proj(out.transpose(0, 1).reshape({n, n_heads_ * head_dim_}));
}

MLPImpl::MLPImpl(const ModelConfig& c) {
  gate_proj = register_module("gate_proj", normal_linear(c.d_model, c.ffn_dim(), c.init_std));
  up_proj = register_module("up_proj", normal_linear(c.d_model, c.ffn_dim(), c.init_std));
  down_proj = register_module("down_proj", normal_linear(c.ffn_dim(), c.d_model, c.init_std));
}

torch::Tensor MLPImpl::forward(const torch::Tensor& x) {
  return down_proj(torch::silu(gate_proj(x)) * up_proj(x));
}

DecoderLayerImpl::DecoderLayerImpl(const ModelConfig& c, int64_t layer) {
  if (c.is_lact_layer(layer)) {
    lact = register_module("lact", LactLayer(c, layer));
  } else {
    self_attn = register_module("self_attn", Attention(c, layer));
  }
  mlp = register_module("mlp", MLP(c));
  input_layernorm = register_module("input_layernorm", RMSNorm(c.d_model, c.norm_eps));
  post_attention_layernorm = register_module("post_attention_layernorm", RMSNorm(c.d_model, c.norm_eps));
}

LlamaModelImpl::LlamaModelImpl(const ModelConfig& c) {
  embed_tokens = register_module("embed_tokens", torch::nn::Embedding(c.vocab_size, c.d_model));
  {
    torch::NoGradGuard no_grad;
    embed_tokens->weight.normal_(0.0, c.init_std);
  }
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.n_layers; ++i) layers->push_back(DecoderLayer(c, i));
  norm = register_module("norm", RMSNorm(c.d_model, c.norm_eps));
}

LlamaImpl::LlamaImpl(const ModelConfig& c) : config_(c) {
  model = register_module("model", LlamaModel(c));
  if (!c.tie_embeddings) lm_head = register_module("lm_head", normal_linear(c.d_model, c.vocab_size, c.init_std));
}

torch::Tensor LlamaImpl::run(const torch::Tensor& tokens, const torch::Tensor& positions,
                             const torch::Tensor& doc_ids, KvCache* cache, const AttendFn* attend,
                             const FastWeightSync* sync) {
  auto h = model->embed_tokens(tokens);
  if (cache) {
    cache->positions = cache->length() ? torch::cat({cache->positions, positions}) : positions;
    cache->k.resize(model->layers->size());
    cache->v.resize(model->layers->size());
    cache->lact.resize(model->layers->size());
  }
  for (size_t i = 0; i < model->layers->size(); ++i) {
    auto& layer = *model->layers->ptr<DecoderLayerImpl>(i);
    if (layer.lact) {
      check(!attend || sync, "LaCT layers with an attention hook but no fast-weight sync: chunk-wise backprop is "
                             "planned for them, not in this version");
      const auto normed = layer.input_layernorm(h);
      h = h + (cache ? layer.lact->forward_cached(normed, positions, cache->lact[i])
                     : layer.lact->forward(normed, positions, doc_ids, attend, sync));
    } else {
      h = h + layer.self_attn(layer.input_layernorm(h), positions, doc_ids, cache ? &cache->k[i] : nullptr,
                              cache ? &cache->v[i] : nullptr, cache ? cache->positions : torch::Tensor(), attend);
    }
    h = h + layer.mlp(layer.post_attention_layernorm(h));
  }
  return h;
}

torch::Tensor LlamaImpl::logits(const torch::Tensor& hidden) {
  const auto h = model->norm(hidden);
  return config_.tie_embeddings ? torch::matmul(h, model->embed_tokens->weight.t()) : lm_head(h);
}

torch::Tensor LlamaImpl::hidden(const torch::Tensor& tokens, const torch::Tensor& positions,
                                const torch::Tensor& doc_ids, const AttendFn* attend, const FastWeightSync* sync) {
  return run(tokens, positions, doc_ids, nullptr, attend, sync);
}

torch::Tensor LlamaImpl::forward(const torch::Tensor& tokens, const torch::Tensor& positions,
                                 const torch::Tensor& doc_ids, const AttendFn* attend, const FastWeightSync* sync) {
  return logits(hidden(tokens, positions, doc_ids, attend, sync));
}

torch::Tensor LlamaImpl::forward_cached(const torch::Tensor& tokens, const torch::Tensor& positions, KvCache& cache) {
  return logits(run(tokens, positions, torch::zeros_like(positions), &cache, nullptr, nullptr));
}

int64_t LlamaImpl::num_parameters() const {
  int64_t n = 0;
  for (const auto& p : parameters()) n += p.numel();
  return n;
}

NamedTensors LlamaImpl::parameter_list() const {
  NamedTensors out;
  for (const auto& item : named_parameters()) out.emplace_back(item.key(), item.value());
  return out;
}

double LlamaImpl::dense_flops_per_token() const {
  const auto& c = config_;
  const double hd = static_cast<double>(c.head_dim());
  const double attn_proj = c.d_model * hd * (2.0 * c.n_heads + 2.0 * c.n_kv_heads);
  const double mlp = 3.0 * c.d_model * c.ffn_dim();
  double macs = c.n_layers * mlp + static_cast<double>(c.d_model) * c.vocab_size;
  // A LaCT layer: qkv + o_proj, and per head 9 d·d_h multiply-adds per token (key forward 2, its
  // update 4, the query's apply 3; seco-lact.md B.3).
  const double fast_dim = static_cast<double>(c.d_model) / c.lact.heads;
  const double lact = 4.0 * c.d_model * c.d_model + 9.0 * c.lact.heads * fast_dim * fast_dim * c.lact.inter_multi;
  for (int64_t i = 0; i < c.n_layers; ++i) macs += c.is_lact_layer(i) ? lact : attn_proj;
  return 2.0 * macs;
}

}  // namespace loom
