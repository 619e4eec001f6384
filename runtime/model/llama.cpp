#include "runtime/model/llama.h"

#include "kernels/attention/attention_mask.h"
#include "parallel/tensor/vocab_parallel.h"
#include "runtime/model/lm_loss.h"
#include "runtime/model/normal_linear.h"
#include "runtime/model/recompute.h"

namespace loom {

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

LlamaImpl::LlamaImpl(const ModelConfig& c) : config_(c), residual_norm_(std::make_shared<LocalResidualNorm>()) {
  model = register_module("model", LlamaModel(c));
  if (!c.tie_embeddings) lm_head = register_module("lm_head", normal_linear(c.d_model, c.vocab_size, c.init_std));
  set_residual_norm(residual_norm_);
}

void LlamaImpl::set_residual_norm(std::shared_ptr<ResidualNorm> rn) {
  residual_norm_ = rn;
  for (int64_t i = 0; i < num_layers(); ++i) layer(i).residual_norm = rn;
}

RMSNormImpl& LlamaImpl::norm_after(int64_t i) {
  return i + 1 < num_layers() ? *layer(i + 1).input_layernorm : *model->norm;
}

Residual LlamaImpl::run_layer(int64_t i, const Residual& in, const SequenceShard& input) {
  DecoderLayerImpl* l = &layer(i);
  RMSNormImpl* next = &norm_after(i);
  if (!l->recompute) return l->forward(in, input, *next);
  // The backward runs the layer again, so what it reads must outlive this call: the modules belong
  // to the model, the shard is copied (tensors and a shared layout).
  const auto out = recompute_module_in_backward(
      [l, next, input](const std::vector<torch::Tensor>& t) {
        const Residual o = l->forward({t[0], t[1]}, input, *next);
        return std::vector<torch::Tensor>{o.h, o.normed};
      },
      {in.h, in.normed});
  return {out[0], out[1]};
}

void LlamaImpl::split_vocabulary(const TensorShard& shard, Communicator& tp) {
  vocab_ = shard;
  tp_ = &tp;
}

torch::Tensor LlamaImpl::embed(const torch::Tensor& tokens) {
  if (!vocab_.split()) return model->embed_tokens(tokens);
  return vocab_parallel_embedding(tokens, model->embed_tokens->weight, vocab_);
}

WovenModel LlamaImpl::woven() {
  std::vector<DecoderLayerImpl*> layers;
  for (int64_t i = 0; i < num_layers(); ++i) layers.push_back(&layer(i));
  return {config_, [this](const torch::Tensor& tokens) { return embed(tokens); }, layers, *model->norm};
}

torch::Tensor LlamaImpl::hidden(const SequenceShard& input) {
  if (weave_) {
    const auto woven = token_weave_hidden(this->woven(), input, *weave_);
    if (woven.defined()) return woven;
  }
  Residual r = residual_norm_->apply({}, embed(input.tokens.tokens), *layer(0).input_layernorm);
  for (int64_t i = 0; i < num_layers(); ++i) r = run_layer(i, r, input);
  return r.normed;
}

torch::Tensor LlamaImpl::head_weight() const {
  return config_.tie_embeddings ? model->embed_tokens->weight : lm_head->weight;
}

torch::Tensor LlamaImpl::logits(const torch::Tensor& hidden) {
  const auto mine = config_.tie_embeddings ? torch::matmul(hidden, model->embed_tokens->weight.t()) : lm_head(hidden);
  return vocab_.split() ? gather_vocab(mine, vocab_, *tp_) : mine;
}

torch::Tensor LlamaImpl::loss(const SequenceShard& input, int64_t head_rows) {
  const auto h = hidden(input);
  if (vocab_.split()) return vocab_parallel_loss(h, head_weight(), input.tokens.labels, vocab_, *tp_);
  if (head_rows == 0) return summed_loss(logits(h), input.tokens.labels);
  return chunked_head_loss(h, head_weight(), input.tokens.labels, head_rows);
}

torch::Tensor LlamaImpl::forward(const SequenceShard& input) { return logits(hidden(input)); }

torch::Tensor LlamaImpl::forward(const torch::Tensor& tokens, const torch::Tensor& positions, const torch::Tensor& doc_ids) {
  return forward(whole_sequence({tokens, positions, doc_ids, {}, 0}));
}

torch::Tensor LlamaImpl::forward_cached(const torch::Tensor& tokens, const torch::Tensor& positions, KvCache& cache) {
  cache.positions = cache.length() ? torch::cat({cache.positions, positions}) : positions;
  cache.layers.resize(static_cast<size_t>(num_layers()));
  Residual r = residual_norm_->apply({}, embed(tokens), *layer(0).input_layernorm);
  for (int64_t i = 0; i < num_layers(); ++i)
    r = layer(i).forward_cached(r, positions, cache.positions, cache.layers[static_cast<size_t>(i)], norm_after(i));
  return logits(r.normed);
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
  // update 4, the query's apply 3; docs/lact.md).
  const double fast_dim = static_cast<double>(c.d_model) / c.lact.heads;
  const double lact = 4.0 * c.d_model * c.d_model + 9.0 * c.lact.heads * fast_dim * fast_dim * c.lact.inter_multi;
  for (int64_t i = 0; i < c.n_layers; ++i) macs += c.is_lact_layer(i) ? lact : attn_proj;
  return 2.0 * macs;
}

double LlamaImpl::training_flops(const PackedTensors& batch) const {
  const auto& c = config_;
  const auto pairs = static_cast<double>(visible_pairs(AttentionMask::self(batch.positions, batch.doc_ids)));
  const double attention = 4.0 * static_cast<double>(c.head_dim() * c.n_heads) * pairs * static_cast<double>(c.n_layers);
  const auto tokens = static_cast<double>((batch.doc_ids >= 0).sum().item<int64_t>());
  return 3.0 * (dense_flops_per_token() * tokens + attention);
}

}  // namespace loom
