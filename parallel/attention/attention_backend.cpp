#include "parallel/attention/attention_backend.h"

#include <cstdio>

#include "parallel/attention/halo_attention.h"
#include "parallel/attention/ring_attention.h"
#include "parallel/attention/token_ring_attention.h"
#include "runtime/core/error.h"

namespace loom {

AttentionChoice choose_attention(const Config& config, int64_t sp) {
  const std::string& wanted = config.parallel.attention;
  if (sp == 1) return {"local", "parallel.sp = 1: the whole sequence is on this rank"};
  const auto& m = config.model;
  const auto element = static_cast<double>(config.train.element_bytes());
  const auto accumulate = static_cast<double>(config.train.accumulate_bytes());
  const double d = static_cast<double>(m.head_dim());
  const double ring_bytes = 2.0 * static_cast<double>(m.n_kv_heads) * d * element;
  const double token_ring_bytes = std::max(static_cast<double>(m.n_heads) * d * element,
                                           static_cast<double>(m.n_heads) * (d + 1) * accumulate);
  char reason[256];
  std::snprintf(reason, sizeof reason, "busiest link direction per token and ring step: ring %.0f B, token_ring %.0f B (%ld query, %ld KV heads)",
                ring_bytes, token_ring_bytes, m.n_heads, m.n_kv_heads);
  if (wanted != "auto") return {wanted, std::string("chosen by parallel.attention; ") + reason};
  return {token_ring_bytes <= ring_bytes ? "token_ring" : "ring", std::string("auto: ") + reason};
}

AttendFn sequence_attention(const std::string& algorithm, const SequenceLayout& layout, Communicator& forward, Communicator& back) {
  if (algorithm == "ring") {
    return [layout, &forward](int64_t, const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, double scale) {
      return ring_attention(q, k, v, layout, scale, forward);
    };
  }
  check(algorithm == "token_ring", "unknown sequence-parallel attention '" + algorithm + "'");
  return [layout, &forward, &back](int64_t, const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, double scale) {
    return token_ring_attention(q, k, v, layout, scale, forward, back);
  };
}

AttendFn model_sequence_attention(const std::string& algorithm, const SequenceLayout& layout, const ModelConfig& model,
                                  Communicator& forward, Communicator& back) {
  const AttendFn full = sequence_attention(algorithm, layout, forward, back);
  if (model.lact.every == 0) return full;
  SequenceLayout windowed = layout;
  windowed.window = model.lact.window;
  return [model, full, windowed, &forward](int64_t layer, const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                          double scale) {
    return model.is_lact_layer(layer) ? halo_attention(q, k, v, windowed, scale, forward) : full(layer, q, k, v, scale);
  };
}

}  // namespace loom
