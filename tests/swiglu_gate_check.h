// What the fused SwiGLU tests (tests/test_swiglu_gate.cpp on the CPU, tests/gpu on CUDA) compare:
// the gate and the inner-loss gradient rows, fused or as LibTorch ops, with the gradients of every
// input, on any device and dtype.
#pragma once
#include <torch/torch.h>

#include <vector>

#include "runtime/model/swiglu_gate.h"

namespace loom::test {

// g, u, p [B, n, dh]; lr0, lr1, lr2 [B, n]. Gate values out to ±12 reach both tails of the sigmoid;
// a width of 37 no vector length divides.
inline std::vector<torch::Tensor> swiglu_inputs(torch::Dtype dtype, torch::Device device = torch::kCPU) {
  torch::manual_seed(8);
  const auto o = torch::dtype(torch::kFloat64);
  std::vector<torch::Tensor> t{torch::randn({2, 5, 37}, o) * 4, torch::randn({2, 5, 37}, o), torch::randn({2, 5, 37}, o),
                               torch::rand({2, 5}, o), torch::rand({2, 5}, o) - 0.5, torch::rand({2, 5}, o)};
  t[0][0][0][0] = 12.0;
  t[0][0][0][1] = -12.0;
  for (auto& x : t) x = x.to(device, dtype);
  return t;
}

// Outputs h, x0, x1, x2 and the gradients of Σ outputs ⊙ weights with respect to the six inputs, in
// float64 on the CPU (weights fixed per output; used[i] false: x_i does not reach the loss).
inline std::vector<torch::Tensor> swiglu_forward_and_grads(const std::vector<torch::Tensor>& in, bool fused,
                                                           const std::vector<bool>& used) {
  std::vector<torch::Tensor> l;
  for (const auto& x : in) l.push_back(x.clone().requires_grad_());
  const auto x = fused ? swiglu_gate_gradients(l[0], l[1], l[2], l[3], l[4], l[5])
                       : composite::swiglu_gate_gradients(l[0], l[1], l[2], l[3], l[4], l[5]);
  const auto h = fused ? swiglu_gate(l[0], l[1]) : composite::swiglu_gate(l[0], l[1]);
  // The same weights whatever the dtype and device: drawn in float64 on the CPU.
  torch::manual_seed(9);
  const auto weight = [](const torch::Tensor& like) {
    return torch::randn(like.sizes(), torch::kFloat64).to(like.device(), like.scalar_type());
  };
  auto loss = (h * weight(h)).sum();
  for (size_t i = 0; i < 3; ++i) {
    const auto w = weight(x[i]);
    if (used[i]) loss = loss + (x[i] * w).sum();
  }
  loss.backward();
  const auto f64 = [](const torch::Tensor& t) { return t.detach().cpu().to(torch::kFloat64); };
  std::vector<torch::Tensor> out{f64(h), f64(x[0]), f64(x[1]), f64(x[2])};
  // An input that reaches the loss only through an unused output has no gradient in autograd's
  // graph and a zero one from the fused node.
  for (const auto& leaf : l) out.push_back(leaf.grad().defined() ? f64(leaf.grad()) : torch::zeros(leaf.sizes(), torch::kFloat64));
  return out;
}

}  // namespace loom::test
