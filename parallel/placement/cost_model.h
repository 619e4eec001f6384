// Zeppelin's cost model (Chen et al., arXiv 2509.21841): what one sequence's training step
// costs on a group of ranks, for the planner to compare placements and for the simulation to
// predict step times. Attention grows as L² and is divided over the p ranks of a ring; the linear
// layers grow as L; a ring step sends one chunk's K and V (and their gradients back in the
// backward) over the slowest link the ring crosses, and hides it behind the step's block of
// attention only when the chunk is long enough.
#pragma once
#include <cstdint>
#include <vector>

#include "parallel/placement/topology.h"

namespace loom {

struct CostModel {
  double attention_flops_per_pair = 0;  // fwd+bwd of every layer, per visible (query, key) pair
  double linear_flops_per_token = 0;    // fwd+bwd of every layer's linear parts, per token
  double ring_bytes_per_token = 0;      // what a ring moves per token of a chunk over fwd+bwd, all layers
  double remap_bytes_per_token = 0;     // what remapping moves per token it moves, over fwd+bwd, all layers
  double flops_per_s = 0;               // one rank's achieved rate
  double attention_flops_per_s = 0;     // its rate on attention (the same unless measured apart)

  // A Llama-style model: d_model, KV width (kv_heads × head_dim), MLP width, layers, bytes per
  // element of the activations; attention at `attention_flops_per_s` (0: flops_per_s).
  static CostModel llama(int64_t d_model, int64_t kv_width, int64_t ffn, int64_t layers, int64_t bytes,
                         double flops_per_s, double attention_flops_per_s = 0);
  // Both rates set to one measured rate.
  void set_rate(double rate) { flops_per_s = attention_flops_per_s = rate; }

  // Seconds of attention for a sequence of `length` on one rank (causal: L(L+1)/2 pairs).
  double attention_s(int64_t length) const;
  double linear_s(int64_t tokens) const;
  // A ring of `p` ranks over a sequence of `length`, each step's chunk crossing a link of
  // `gbyte_s` with `latency_s`: the first step's block, then p - 1 steps of the slower of the
  // block and its transfer.
  double ring_s(int64_t length, int p, double gbyte_s, double latency_s) const;
  // The shortest chunk (tokens per rank) whose ring step hides its transfer over a link of
  // `gbyte_s`: below it a ring over that link is bound by communication.
  double min_hiding_chunk(double gbyte_s) const;
};

}  // namespace loom
