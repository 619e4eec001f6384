// The elementwise part of the fast-weight SwiGLU (fast_weights.h): its gate, and the inner loss's
// gradient rows that the descent directions multiply with K and V. On the CPU, and on CUDA where Loom
// is built with its kernels (float32, float64), each is one autograd node whose forward and backward
// are single fused passes (kernels/swiglu_gate_math.h): as LibTorch ops (sigmoid, SiLU, its
// derivative, the products and the rates, each a node saving its inputs) they took longer than the
// chunk's matrix products. Elsewhere they run as the LibTorch ops of `composite`.
#pragma once
#include <torch/torch.h>

#include <array>

namespace loom {

// Whether the two functions below may take the fused passes (default true, process-wide). Off, they
// always run the LibTorch ops of `composite`: for benchmarks that show what the fusion buys.
void set_swiglu_fusion(bool on);

// H = SiLU(G) ⊙ U for G, U [B, n, dh].
torch::Tensor swiglu_gate(const torch::Tensor& g, const torch::Tensor& u);

// The rows the descent directions are built from, for G = K W0ᵀ, U = K W2ᵀ, P = V W1 [B, n, dh]
// and per-token rates η0, η1, η2 [B, n]:
//   X0 = η0 ⊙ P ⊙ U ⊙ SiLU'(G),   X1 = η1 ⊙ SiLU(G) ⊙ U,   X2 = η2 ⊙ P ⊙ SiLU(G).
std::array<torch::Tensor, 3> swiglu_gate_gradients(const torch::Tensor& g, const torch::Tensor& u, const torch::Tensor& p,
                                                   const torch::Tensor& lr0, const torch::Tensor& lr1, const torch::Tensor& lr2);

// The same as LibTorch ops, differentiated by autograd.
namespace composite {
torch::Tensor swiglu_gate(const torch::Tensor& g, const torch::Tensor& u);
std::array<torch::Tensor, 3> swiglu_gate_gradients(const torch::Tensor& g, const torch::Tensor& u, const torch::Tensor& p,
                                                   const torch::Tensor& lr0, const torch::Tensor& lr1, const torch::Tensor& lr2);
}  // namespace composite

}  // namespace loom
