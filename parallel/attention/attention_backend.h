// Which attention algorithm a run uses, and the function the model calls for one packed sequence.
//
// With parallel.sp = 1 attention is local. With sp > 1 it is ring (pass-KV) or token_ring (pass-Q);
// `auto` picks the one that puts fewer bytes on the busiest direction of a link per ring step
// (TokenRing brief §3.5): ring moves K and V, 2·G·d elements per token, in one direction; token_ring
// moves Q (H·d) one way and the float32 partial results (H·(d + 1)) the other. TokenRing wins for
// multi-head attention and loses once the query heads outnumber the KV heads about 2 to 1.
#pragma once
#include <torch/torch.h>

#include <string>

#include "parallel/attention/attend_fn.h"
#include "parallel/attention/sequence_layout.h"
#include "parallel/comm/communicator.h"
#include "runtime/core/config.h"

namespace loom {

struct AttentionChoice {
  std::string algorithm;  // local | ring | token_ring
  std::string reason;     // printed at start
};

// Resolves parallel.attention (auto included) for this model, degree and dtype.
AttentionChoice choose_attention(const Config& config, int64_t sp);

// The attention of this rank's shard of `layout` with the chosen algorithm; `forward` and `back`
// are the sequence-parallel group and a second communicator over the same ranks.
AttendFn sequence_attention(const std::string& algorithm, const SequenceLayout& layout, Communicator& forward, Communicator& back);

// The same for every layer of `model`: LaCT layers attend within their window (model.lact.window),
// gathering the halo of keys the window reaches on other ranks (halo_attention.h) whatever `algorithm` is.
AttendFn model_sequence_attention(const std::string& algorithm, const SequenceLayout& layout, const ModelConfig& model,
                                  Communicator& forward, Communicator& back);

}  // namespace loom
