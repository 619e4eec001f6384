#include "parallel/placement/cost_model.h"

#include <algorithm>

namespace loom {

CostModel CostModel::llama(int64_t d_model, int64_t kv_width, int64_t ffn, int64_t layers, int64_t bytes,
                           double flops_per_s, double attention_flops_per_s) {
  const double d = static_cast<double>(d_model), kv = static_cast<double>(kv_width), l = static_cast<double>(layers);
  CostModel c;
  // Forward: QK^T and PV, 2 FLOPs per multiply-add over d_model each; the backward twice that.
  c.attention_flops_per_pair = 3.0 * 4.0 * d * l;
  // Forward: q and o (d x d), k and v (d x kv), the gated MLP (3 x d x ffn); the backward twice that.
  c.linear_flops_per_token = 3.0 * 2.0 * (2.0 * d * d + 2.0 * d * kv + 3.0 * d * static_cast<double>(ffn)) * l;
  // K and V forward; K and V again with dK and dV in the backward.
  c.ring_bytes_per_token = 6.0 * kv * static_cast<double>(bytes) * l;
  // The hidden state to the linear layout and back, in the forward and in the backward.
  c.remap_bytes_per_token = 4.0 * d * static_cast<double>(bytes) * l;
  c.flops_per_s = flops_per_s;
  c.attention_flops_per_s = attention_flops_per_s > 0 ? attention_flops_per_s : flops_per_s;
  return c;
}

double CostModel::attention_s(int64_t length) const {
  const double l = static_cast<double>(length);
  return l * (l + 1) / 2 * attention_flops_per_pair / attention_flops_per_s;
}

double CostModel::linear_s(int64_t tokens) const {
  return static_cast<double>(tokens) * linear_flops_per_token / flops_per_s;
}

double CostModel::ring_s(int64_t length, int p, double gbyte_s, double latency_s) const {
  if (p <= 1) return attention_s(length);
  // Zigzag chunks give every rank the same share of the causal pairs at every step.
  const double block = attention_s(length) / (static_cast<double>(p) * p);
  const double chunk = static_cast<double>(length) / p;
  const double transfer = chunk * ring_bytes_per_token / (gbyte_s * 1e9) + latency_s;
  return block + (p - 1) * std::max(block, transfer);
}

double CostModel::min_hiding_chunk(double gbyte_s) const {
  // A step's block of c²/2 pairs against its c tokens' transfer.
  return 2.0 * ring_bytes_per_token * attention_flops_per_s / (attention_flops_per_pair * gbyte_s * 1e9);
}

}  // namespace loom
