// LaCT's fast-weight network and its hand-written inner update (Zhang et al., "Test-Time Training
// Done Right", 2025; docs/lact.md). Per head, a SwiGLU without biases,
//   f(x) = W1 (SiLU(W0 x) ⊙ (W2 x)),   W0, W2: [dh, d],  W1: [d, dh],
// is trained at test time on a chunk of (key, value) pairs to maximise Σ_i η_i ⟨f(k_i), v_i⟩, with a
// separate per-token rate for each matrix. The descent directions are written out (no autograd
// inside the inner loop); the outer backward differentiates through them like any other op.
#pragma once
#include <torch/torch.h>

namespace loom {

struct FastWeights {
  torch::Tensor w0, w1, w2;  // [B, dh, d], [B, d, dh], [B, dh, d]: one set per (sequence, head)
};

// x [B, n, d] -> f(x) [B, n, d].
torch::Tensor apply_fast_weights(const FastWeights& w, const torch::Tensor& x);

// The update directions Δ (the negative gradients of L = -Σ_i η_i ⟨f(k_i), v_i⟩, one rate vector
// per matrix) for keys and values k, v [B, n, d] and rates [B, n]; W <- W + Δ applies them:
//   G = K W0ᵀ, U = K W2ᵀ, H = SiLU(G) ⊙ U, P = V W1,
//   ΔW1 = Vᵀ diag(η1) H,  ΔW0 = (P ⊙ U ⊙ SiLU'(G))ᵀ diag(η0) K,  ΔW2 = (P ⊙ SiLU(G))ᵀ diag(η2) K.
FastWeights descent_directions(const FastWeights& w, const torch::Tensor& k, const torch::Tensor& v,
                               const torch::Tensor& lr0, const torch::Tensor& lr1, const torch::Tensor& lr2);

}  // namespace loom
