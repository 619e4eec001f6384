// LaCT's causal chunk loop over one packed sequence (seco-lact.md, B.3-B.4): within each document,
// chunk c's queries read the fast weights that chunks before it wrote ("apply, then update"); the
// last chunk of a document, partial or not, is apply-only; every document starts again from the
// initial weights (the reference code lets state leak across packed documents; Loom does not).
// Each update is W <- W + Δ with Δ the descent directions of fast_weights.h, optionally with
// momentum (Δ <- Δ + mean(β over the chunk) M, M <- Δ), Muon (Δ <- NS(Δ)) and the row-wise weight
// norm that rescales every row of W to its norm in the initial weights. All of it is ordinary
// torch ops, so the outer backward differentiates through the updates.
#pragma once
#include <torch/torch.h>

#include <array>

#include "runtime/model/fast_weights.h"

namespace loom {

struct FastWeightScanOptions {
  int64_t chunk = 2048;
  bool muon = false;
  bool weight_norm = true;
  bool recompute = false;  // keep each chunk's weights, recompute its update in the backward
};

// The fast weights of B (sequence, head) pairs between two updates.
struct FastWeightState {
  FastWeights w;
  std::array<torch::Tensor, 3> velocity;  // momentum buffers, undefined before the first update
  std::array<torch::Tensor, 3> norms;     // row norms of the initial weights (the weight norm's targets)
};

FastWeightState initial_fast_weight_state(const FastWeights& initial);

// One update of `s` with a chunk's keys and values [B, n, d], rates [B, n] and momentum β [B, n]
// (undefined: no momentum).
void update_fast_weights(FastWeightState& s, const torch::Tensor& k, const torch::Tensor& v, const torch::Tensor& lr0,
                         const torch::Tensor& lr1, const torch::Tensor& lr2, const torch::Tensor& momentum,
                         const FastWeightScanOptions& options);

// q, k, v [B, N, d]; rates lr0, lr1, lr2 [B, N]; momentum β [B, N] or undefined (no momentum);
// doc_ids [N] (the same layout for the B heads). Returns the fast-weight outputs [B, N, d].
torch::Tensor fast_weight_scan(const FastWeights& initial, const torch::Tensor& q, const torch::Tensor& k,
                               const torch::Tensor& v, const torch::Tensor& lr0, const torch::Tensor& lr1,
                               const torch::Tensor& lr2, const torch::Tensor& momentum, const torch::Tensor& doc_ids,
                               const FastWeightScanOptions& options);

}  // namespace loom
