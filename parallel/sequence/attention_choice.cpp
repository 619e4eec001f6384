#include "parallel/sequence/attention_choice.h"

#include <algorithm>
#include <cstdio>

#include "runtime/core/precision.h"

namespace loom {

AttentionChoice choose_attention(const Config& config, int64_t sp) {
  const std::string& wanted = config.parallel.attention;
  if (sp == 1) return {"local", "parallel.sp = 1: the whole sequence is on this rank"};
  const auto& m = config.model;
  const Precision precision = resolve_precision(config);
  const auto element = static_cast<double>(precision.param_bytes());
  const auto accumulate = static_cast<double>(precision.accumulate_bytes());
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

}  // namespace loom
