// Newton-Schulz orthogonalisation: maps a matrix G = U S Vᵀ to approximately U Vᵀ (every singular
// value pushed towards 1) with a few odd-polynomial iterations X <- a X + (b A + c A A) X, A = X Xᵀ,
// after scaling G to unit Frobenius norm. Two users: the Muon optimizer (optim/muon.h) on weight
// updates, and LaCT's fast-weight updates inside the model (Zhang et al., "Test-Time Training Done
// Right", 2025, use it as their update rule), which is why it lives below both.
#pragma once
#include <torch/torch.h>

namespace loom {

enum class NsSchedule {
  kPerIteration,  // LaCT's five (a, b, c) triples, one per iteration (5 steps)
  kClassic,       // one triple (3.4445, -4.7750, 2.0315) repeated `steps` times
};

// g [..., m, n] (a batch of matrices) -> the orthogonalised matrices, same shape and dtype. The
// iteration runs on the wider orientation (transposing tall matrices) in float32 or wider.
torch::Tensor newton_schulz(const torch::Tensor& g, NsSchedule schedule = NsSchedule::kPerIteration, int steps = 5);

}  // namespace loom
