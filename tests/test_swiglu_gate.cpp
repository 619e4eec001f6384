// The fused CPU gate of the fast-weight SwiGLU and its inner-loss gradient rows against the same
// formulas as LibTorch ops differentiated by autograd: forward and every input's gradient, in
// float64 and float32, with an output whose gradient is absent.
#include "runtime/model/swiglu_gate.h"

#include "tests/test_util.h"

namespace loom {
namespace {

using test::IntraOpThreads;
using test::relative_error;

struct Inputs {
  std::vector<torch::Tensor> t;  // g, u, p [B, n, dh]; lr0, lr1, lr2 [B, n]
};

Inputs random_inputs(torch::Dtype dtype) {
  torch::manual_seed(8);
  const auto o = torch::dtype(torch::kFloat64);
  // Gate values out to ±12 reach both tails of the sigmoid; a width of 37 no vector length divides.
  std::vector<torch::Tensor> t{torch::randn({2, 5, 37}, o) * 4, torch::randn({2, 5, 37}, o), torch::randn({2, 5, 37}, o),
                               torch::rand({2, 5}, o), torch::rand({2, 5}, o) - 0.5, torch::rand({2, 5}, o)};
  t[0][0][0][0] = 12.0;
  t[0][0][0][1] = -12.0;
  for (auto& x : t) x = x.to(dtype);
  return {t};
}

// Outputs and the gradients of Σ outputs ⊙ weights (weights fixed per output; null: output unused).
std::vector<torch::Tensor> forward_and_grads(const Inputs& in, bool fused, const std::vector<bool>& used) {
  std::vector<torch::Tensor> leaves;
  for (const auto& x : in.t) leaves.push_back(x.clone().requires_grad_());
  const auto& l = leaves;
  const auto x = fused ? swiglu_gate_gradients(l[0], l[1], l[2], l[3], l[4], l[5])
                       : composite::swiglu_gate_gradients(l[0], l[1], l[2], l[3], l[4], l[5]);
  const auto h = fused ? swiglu_gate(l[0], l[1]) : composite::swiglu_gate(l[0], l[1]);
  // The same weights in either dtype: drawn in float64.
  torch::manual_seed(9);
  const auto weight = [](const torch::Tensor& like) { return torch::randn(like.sizes(), torch::kFloat64).to(like.dtype()); };
  auto loss = (h * weight(h)).sum();
  for (size_t i = 0; i < 3; ++i) {
    const auto w = weight(x[i]);
    if (used[i]) loss = loss + (x[i] * w).sum();
  }
  loss.backward();
  std::vector<torch::Tensor> out{h.detach(), x[0].detach(), x[1].detach(), x[2].detach()};
  // An input that reaches the loss only through an unused output has no gradient in autograd's
  // graph and a zero one from the fused node.
  for (const auto& leaf : leaves)
    out.push_back(leaf.grad().defined() ? leaf.grad().to(torch::kFloat64) : torch::zeros_like(leaf, torch::kFloat64));
  return out;
}

TEST(SwigluGate, FusedMatchesTheLibTorchOpsInFloat64) {
  const Inputs in = random_inputs(torch::kFloat64);
  for (const std::vector<bool>& used : {std::vector<bool>{true, true, true}, std::vector<bool>{true, false, true}}) {
    const auto got = forward_and_grads(in, true, used), want = forward_and_grads(in, false, used);
    for (size_t i = 0; i < got.size(); ++i)
      EXPECT_LT(relative_error(got[i], want[i]), 1e-12) << "tensor " << i << ", x1 used: " << used[1];
  }
}

TEST(SwigluGate, FusedFloat32MatchesTheFloat64Ops) {
  const auto got = forward_and_grads(random_inputs(torch::kFloat32), true, {true, true, true});
  const auto want = forward_and_grads(random_inputs(torch::kFloat64), false, {true, true, true});
  ASSERT_EQ(got[0].scalar_type(), torch::kFloat32);
  for (size_t i = 0; i < got.size(); ++i) EXPECT_LT(relative_error(got[i].to(torch::kFloat64), want[i]), 1e-5) << "tensor " << i;
}

TEST(SwigluGate, RunsOnTwoThreads) {
  const IntraOpThreads two(2);
  // Rows enough for the parallel split: 64 x 300 of width 37.
  torch::manual_seed(10);
  const auto o = torch::dtype(torch::kFloat64);
  Inputs in{{torch::randn({64, 300, 37}, o), torch::randn({64, 300, 37}, o), torch::randn({64, 300, 37}, o),
             torch::rand({64, 300}, o), torch::rand({64, 300}, o), torch::rand({64, 300}, o)}};
  const auto got = forward_and_grads(in, true, {true, true, true}), want = forward_and_grads(in, false, {true, true, true});
  for (size_t i = 0; i < got.size(); ++i) EXPECT_LT(relative_error(got[i], want[i]), 1e-12) << "tensor " << i;
}

}  // namespace
}  // namespace loom
