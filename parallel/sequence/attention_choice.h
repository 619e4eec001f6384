// Which sequence-parallel attention a run uses.
//
// With parallel.sp = 1 attention is local. With sp > 1 it is ring (pass-KV) or token_ring (pass-Q);
// `auto` picks the one that puts fewer bytes on the busiest direction of a link per ring step
// (docs/sequence-parallelism.md): ring moves K and V, 2·G·d elements per token, in one direction;
// token_ring moves Q (H·d) one way and the float32 partial results (H·(d + 1)) the other. TokenRing
// wins for multi-head attention and loses once the query heads outnumber the KV heads about 2 to 1.
#pragma once
#include <cstdint>
#include <string>

#include "runtime/core/config.h"

namespace loom {

struct AttentionChoice {
  std::string algorithm;  // local | ring | token_ring
  std::string reason;     // printed at start
};

// Resolves parallel.attention (auto included) for this model, degree and dtype.
AttentionChoice choose_attention(const Config& config, int64_t sp);

}  // namespace loom
