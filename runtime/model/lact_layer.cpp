#include "runtime/model/lact_layer.h"

#include <cmath>
#include <optional>

#include "kernels/attention/block_attention.h"
#include "kernels/rms_norm.h"
#include "runtime/core/error.h"
#include "runtime/core/precision.h"
#include "runtime/model/fast_weight_scan.h"
#include "runtime/model/normal_linear.h"
#include "runtime/model/rope.h"

namespace loom {
namespace {

// [N, heads * d] -> [heads, N, d]
torch::Tensor by_head(const torch::Tensor& t, int64_t heads) {
  return t.view({t.size(0), heads, -1}).transpose(0, 1);
}

// [heads, N, d] -> [N, heads * d]
torch::Tensor merge_heads(const torch::Tensor& t) { return t.transpose(0, 1).reshape({t.size(1), -1}); }

}  // namespace

LactLayerImpl::LactLayerImpl(const ModelConfig& c)
    : core(std::make_shared<LocalAttention>(c.lact.window)),
      lact_(c.lact),
      d_model_(c.d_model),
      attn_heads_(c.n_heads),
      heads_(c.lact.heads),
      fast_dim_(c.d_model / c.lact.heads),
      hidden_(c.d_model / c.lact.heads * c.lact.inter_multi),
      rope_theta_(c.rope_theta),
      eps_(c.norm_eps) {
  qkv = register_module("qkv", normal_linear(d_model_, 3 * d_model_, c.init_std));
  o_proj = register_module("o_proj", normal_linear(d_model_, d_model_, c.init_std));
  rates = register_module("rates", normal_linear(d_model_, 3 * heads_, c.init_std, true));
  if (lact_.momentum) momentum = register_module("momentum", normal_linear(d_model_, heads_, c.init_std, true));
  ttt_scale = register_module("ttt_scale", normal_linear(d_model_, heads_, c.init_std, true));
  {
    // SiLU(1.2785) = 1: the fast-weight branch starts at full weight rather than at SiLU(0) = 0.
    torch::NoGradGuard no_grad;
    ttt_scale->bias.fill_(1.2785);
  }
  q_scale_ = register_parameter("q_scale", torch::ones({d_model_}));
  q_offset_ = register_parameter("q_offset", torch::zeros({d_model_}));
  k_scale_ = register_parameter("k_scale", torch::ones({d_model_}));
  k_offset_ = register_parameter("k_offset", torch::zeros({d_model_}));
  fast_norm_ = register_parameter("fast_norm", torch::ones({fast_dim_}));
  // Initial fast weights as in the LaCT reference code's language-model configs.
  const int64_t r = lact_.lowrank;
  if (r > 0) {
    w0_left_ = register_parameter("w0_left", torch::randn({heads_, hidden_, r}) * (0.5 / std::sqrt(r)));
    w0_right_ = register_parameter("w0_right", torch::randn({heads_, r, fast_dim_}) * (0.5 / std::sqrt(fast_dim_)));
    w2_left_ = register_parameter("w2_left", torch::randn({heads_, hidden_, r}) * (0.5 / std::sqrt(r)));
    w2_right_ = register_parameter("w2_right", torch::randn({heads_, r, fast_dim_}) * (0.5 / std::sqrt(fast_dim_)));
  } else {
    w0_ = register_parameter("w0", torch::randn({heads_, hidden_, fast_dim_}) / std::sqrt(fast_dim_));
    w2_ = register_parameter("w2", torch::randn({heads_, hidden_, fast_dim_}) / std::sqrt(fast_dim_));
  }
  w1_ = register_parameter("w1", torch::randn({heads_, fast_dim_, hidden_}) / std::sqrt(hidden_));
}

FastWeights LactLayerImpl::initial_weights() const {
  if (lact_.lowrank == 0) return {w0_, w1_, w2_};
  const auto half_eye = 0.5 * torch::eye(hidden_, fast_dim_, w1_.options());
  return {torch::matmul(w0_left_, w0_right_) + half_eye, w1_, torch::matmul(w2_left_, w2_right_) + half_eye};
}

torch::Tensor LactLayerImpl::rope_heads(const torch::Tensor& t, const torch::Tensor& positions) const {
  return apply_rope(t.view({t.size(0), attn_heads_, -1}), positions, rope_theta_).transpose(0, 1);
}

torch::Tensor LactLayerImpl::forward(const torch::Tensor& x, const SequenceShard& input) {
  const auto& positions = input.tokens.positions;
  const auto parts = qkv(x).chunk(3, -1);
  const auto &q = parts[0], &k = parts[1], &v = parts[2];
  const auto qh = rope_heads(q, positions), kh = rope_heads(k, positions), vh = by_head(v, attn_heads_);
  const auto attended = core->attend(qh, kh, vh, 1.0 / std::sqrt(d_model_ / attn_heads_), input);
  const FastInputs f = fast_inputs(x, q, k, v, positions);
  std::optional<FastWeightSync> sync;
  if (input.sharded()) {
    check(static_cast<bool>(update_sum), "a LaCT layer on a sequence shard needs its fast-weight update sum over the ranks; "
                                         "install it with parallelize()");
    const SequenceLayout& l = *input.layout;
    // Copied into the scan, which may call it again in the backward: the ring outlives the step.
    const Ring* ring = input.ring;
    const auto sum = [sum_over = update_sum, ring](const torch::Tensor& t) { return sum_over(t, ring); };
    sync = FastWeightSync{l.in_sequence_order(l.pos), l.in_sequence_order(l.doc), positions, sum};
  }
  const auto fast = fast_weight_scan(initial_in(f.q.scalar_type()), f.q, f.k, f.v, f.lr0, f.lr1, f.lr2, f.beta,
                                     input.tokens.doc_ids, scan_options(), sync ? &*sync : nullptr);
  return o_proj(merge_heads(attended) + fast_output(x, fast));
}

torch::Tensor LactLayerImpl::forward(const torch::Tensor& x, const torch::Tensor& positions, const torch::Tensor& doc_ids) {
  return forward(x, whole_sequence({{}, positions, doc_ids, {}, 0}));
}

torch::Tensor LactLayerImpl::forward_cached(const torch::Tensor& x, const torch::Tensor& positions, LactCache& cache) {
  const auto parts = qkv(x).chunk(3, -1);
  const auto &q = parts[0], &k = parts[1], &v = parts[2];
  // Window attention of the new tokens over the cached window and themselves.
  const auto append = [](const torch::Tensor& cached, const torch::Tensor& fresh, int64_t dim) {
    return cached.defined() ? torch::cat({cached, fresh}, dim) : fresh;
  };
  const auto keys = append(cache.k, rope_heads(k, positions), 1), values = append(cache.v, by_head(v, attn_heads_), 1);
  const auto key_pos = append(cache.positions, positions, 0);
  const AttentionMask mask{positions, torch::zeros_like(positions), key_pos, torch::zeros_like(key_pos), true, lact_.window};
  const auto attended = block_forward(rope_heads(q, positions), keys, values, mask, 1.0 / std::sqrt(d_model_ / attn_heads_));
  const int64_t keep = std::min(lact_.window - 1, key_pos.size(0));
  cache.k = keys.narrow(1, keys.size(1) - keep, keep);
  cache.v = values.narrow(1, values.size(1) - keep, keep);
  cache.positions = key_pos.narrow(0, key_pos.size(0) - keep, keep);

  // Fast weights: each new token reads the current weights; a completed chunk updates them.
  const FastInputs f = fast_inputs(x, q, k, v, positions);
  if (!cache.fast.w.w0.defined()) cache.fast = initial_fast_weight_state(initial_in(f.q.scalar_type()), f.beta.defined());
  const std::vector<torch::Tensor> streams = f.beta.defined() ? std::vector<torch::Tensor>{f.k, f.v, f.lr0, f.lr1, f.lr2, f.beta}
                                                              : std::vector<torch::Tensor>{f.k, f.v, f.lr0, f.lr1, f.lr2};
  std::vector<torch::Tensor> outputs;
  for (int64_t i = 0; i < x.size(0);) {
    const int64_t n = std::min(lact_.chunk - cache.pending_tokens, x.size(0) - i);
    outputs.push_back(apply_fast_weights(cache.fast.w, f.q.narrow(1, i, n)));
    cache.pending.resize(streams.size());
    for (size_t s = 0; s < streams.size(); ++s) cache.pending[s] = append(cache.pending[s], streams[s].narrow(1, i, n), 1);
    cache.pending_tokens += n;
    i += n;
    if (cache.pending_tokens == lact_.chunk) {
      const auto& p = cache.pending;
      update_fast_weights(cache.fast, p[0], p[1], p[2], p[3], p[4], p.size() > 5 ? p[5] : torch::Tensor(), scan_options());
      cache.pending.clear();
      cache.pending_tokens = 0;
    }
  }
  return o_proj(merge_heads(attended.out.to(x.scalar_type())) + fast_output(x, torch::cat(outputs, 1)));
}

FastWeights LactLayerImpl::initial_in(torch::ScalarType dtype) const {
  const FastWeights w = initial_weights();
  return {w.w0.to(dtype), w.w1.to(dtype), w.w2.to(dtype)};
}

FastInputs LactLayerImpl::fast_inputs(const torch::Tensor& x, const torch::Tensor& q, const torch::Tensor& k,
                                      const torch::Tensor& v, const torch::Tensor& positions) const {
  const auto dt = accumulation_dtype(x.scalar_type());
  const int64_t n = x.size(0);
  // SiLU, unit length per fast head, then RoPE on the attention heads' layout (as the reference;
  // model.lact.rope: false leaves them unrotated, so a key matches a query at any distance).
  const auto query_or_key = [&](const torch::Tensor& t, const torch::Tensor& scale, const torch::Tensor& offset) {
    auto f = torch::silu(t * scale + offset).view({n, heads_, fast_dim_});
    f = f / f.norm(2, -1, true).clamp_min(1e-5);
    f = f.reshape({n, d_model_});
    if (lact_.rope) f = merge_heads(rope_heads(f, positions));
    return by_head(f, heads_).to(dt);
  };
  const auto xs = x.to(dt);
  const auto project = [&](const torch::nn::Linear& l) { return torch::linear(xs, l->weight.to(dt), l->bias.to(dt)); };
  const double inv_softplus_base = std::log(std::expm1(lact_.base_lr));
  const auto lr = torch::softplus(project(rates) + inv_softplus_base).view({n, heads_, 3}).permute({2, 1, 0});
  return {query_or_key(q, q_scale_, q_offset_),
          query_or_key(k, k_scale_, k_offset_),
          by_head(torch::silu(v), heads_).to(dt),
          lr[0],
          lr[1],
          lr[2],
          momentum ? torch::sigmoid(project(momentum)).t() : torch::Tensor()};
}

torch::Tensor LactLayerImpl::fast_output(const torch::Tensor& x, const torch::Tensor& out) const {
  const auto scale = torch::silu(torch::linear(x, ttt_scale->weight, ttt_scale->bias)).t().unsqueeze(-1);
  return merge_heads(rms_norm(out, fast_norm_, eps_).to(x.scalar_type()) * scale);
}

}  // namespace loom
