#include "runtime/model/token_weave.h"

#include "parallel/tensor/reduce_add_norm.h"

namespace loom {
namespace {

// Rows [begin, begin + count) of a packed sequence.
SequenceShard rows_of(const PackedTensors& t, int64_t begin, int64_t count) {
  const auto take = [&](const torch::Tensor& x) { return x.defined() ? x.narrow(0, begin, count) : x; };
  return whole_sequence({take(t.tokens), take(t.positions), take(t.doc_ids), take(t.labels), t.label_count});
}

// One layer's work per token of its linear layers and per attention pair (FLOPs).
WeaveCost layer_cost(const ModelConfig& c) {
  const double d = static_cast<double>(c.d_model), hd = static_cast<double>(c.head_dim());
  const double per_token = 2.0 * (d * hd * (2.0 * c.n_heads + 2.0 * c.n_kv_heads) + 3.0 * d * c.ffn_dim());
  return {per_token, 4.0 * hd * static_cast<double>(c.n_heads)};
}

}  // namespace

torch::Tensor token_weave_hidden(const WovenModel& model, const SequenceShard& input, const TokenWeavePlan& plan) {
  const auto& t = input.tokens;
  if (input.sharded()) return {};
  const TokenSplit cut = split_tokens(t.positions, t.doc_ids, plan.tp->size(), plan.min_tokens, layer_cost(model.config));
  if (!cut.split()) return {};
  const SequenceShard a = rows_of(t, 0, cut.first), b = rows_of(t, cut.first, t.tokens.size(0) - cut.first);
  const auto n_layers = static_cast<int64_t>(model.layers.size());
  // The norm the boundary after layer i applies: the next layer's input norm, or the final one.
  const auto norm_after = [&](int64_t i) -> RMSNormImpl& {
    return i + 1 < n_layers ? *model.layers[i + 1]->input_layernorm : model.final_norm;
  };
  AsyncBoundaries boundaries(*plan.tp, *plan.worker, 2 + 4 * n_layers);
  const auto boundary = [&](const torch::Tensor& partial, const torch::Tensor& residual, RMSNormImpl& norm) {
    return boundaries.start(partial, residual, norm.weight, norm.eps());
  };
  RMSNormImpl& first_norm = *model.layers.front()->input_layernorm;
  PendingNorm pending_a = boundary(model.embed(a.tokens.tokens), {}, first_norm);
  PendingNorm pending_b = boundary(model.embed(b.tokens.tokens), {}, first_norm);
  ReducedNorm ra = pending_a.wait();
  for (int64_t i = 0; i < n_layers; ++i) {
    DecoderLayerImpl& layer = *model.layers[i];
    RMSNormImpl& post = *layer.post_attention_layernorm;
    KeyBlock keys_a, keys_b;
    pending_a = boundary(layer.self_attn->forward_half(ra.normed, a, nullptr, &keys_a), ra.residual, post);
    ReducedNorm rb = pending_b.wait();
    pending_b = boundary(layer.self_attn->forward_half(rb.normed, b, &keys_a, &keys_b), rb.residual, post);
    ra = pending_a.wait();
    pending_a = boundary(layer.mlp(ra.normed), ra.residual, norm_after(i));
    rb = pending_b.wait();
    pending_b = boundary(layer.mlp(rb.normed), rb.residual, norm_after(i));
    ra = pending_a.wait();
  }
  return torch::cat({ra.normed, pending_b.wait().normed});
}

}  // namespace loom
