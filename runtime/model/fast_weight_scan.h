// LaCT's causal chunk loop over one packed sequence (Zhang et al. 2025; docs/lact.md): within each document,
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
#include <functional>

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
  std::array<torch::Tensor, 3> velocity;  // momentum buffers (zero at the start), undefined without momentum
  std::array<torch::Tensor, 3> norms;     // row norms of the initial weights (the weight norm's targets)
};

FastWeightState initial_fast_weight_state(const FastWeights& initial, bool momentum);

// One update of `s` by a chunk's summed descent directions and its mean momentum β̄ [B] (undefined:
// no momentum): momentum, Muon, W <- W + Δ, weight norm.
void apply_update(FastWeightState& s, const FastWeights& directions, const torch::Tensor& beta_mean,
                  const FastWeightScanOptions& options);

// apply_update with a chunk's keys and values [B, n, d], rates [B, n] and momentum β [B, n].
void update_fast_weights(FastWeightState& s, const torch::Tensor& k, const torch::Tensor& v, const torch::Tensor& lr0,
                         const torch::Tensor& lr1, const torch::Tensor& lr2, const torch::Tensor& momentum,
                         const FastWeightScanOptions& options);

// Context parallelism (LaCT paper §CP): this rank holds some tokens of the packed sequence, chunks
// are cut on the whole sequence, and every update sums the partial directions (and β) of all ranks,
// so every rank applies the same update. Positions restart at every document.
struct FastWeightSync {
  torch::Tensor positions, doc_ids;  // int64 [total]: the whole packed sequence, in order
  torch::Tensor local_positions;     // int64 [N]: this rank's tokens (doc_ids passed to the scan)
  std::function<torch::Tensor(const torch::Tensor&)> all_reduce;  // sum over the ranks, differentiable
};

// q, k, v [B, N, d]; rates lr0, lr1, lr2 [B, N]; momentum β [B, N] or undefined (no momentum);
// doc_ids [N] (the same layout for the B heads; -1: padding, output 0). Returns the fast-weight
// outputs [B, N, d]. With `sync` the N tokens are this rank's share of a longer sequence.
torch::Tensor fast_weight_scan(const FastWeights& initial, const torch::Tensor& q, const torch::Tensor& k,
                               const torch::Tensor& v, const torch::Tensor& lr0, const torch::Tensor& lr1,
                               const torch::Tensor& lr2, const torch::Tensor& momentum, const torch::Tensor& doc_ids,
                               const FastWeightScanOptions& options, const FastWeightSync* sync = nullptr);

}  // namespace loom
