// The fast-weight SwiGLU's fused CUDA kernels against the same formulas as LibTorch ops
// differentiated by autograd: forward and every input's gradient, float64 on the GPU against the
// ops on the GPU, float32 on the GPU against the ops in float64. Skips where no GPU exists.
#include <gtest/gtest.h>

#include "tests/relative_error.h"
#include "tests/swiglu_gate_check.h"

namespace loom {
namespace {

using test::relative_error;

// The fused node, not the composite ops, must be what autograd recorded for CUDA tensors.
void expect_fused_node(const torch::Tensor& g, const torch::Tensor& u) {
  const auto h = swiglu_gate(g.clone().requires_grad_(), u);
  ASSERT_TRUE(h.grad_fn());
  EXPECT_NE(h.grad_fn()->name().find("GateFn"), std::string::npos) << h.grad_fn()->name();
}

TEST(SwigluGateCuda, FusedMatchesTheLibTorchOpsInFloat64) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device on this machine";
  const auto in = test::swiglu_inputs(torch::kFloat64, torch::kCUDA);
  expect_fused_node(in[0], in[1]);
  for (const std::vector<bool>& used : {std::vector<bool>{true, true, true}, std::vector<bool>{true, false, true}}) {
    const auto got = test::swiglu_forward_and_grads(in, true, used), want = test::swiglu_forward_and_grads(in, false, used);
    for (size_t i = 0; i < got.size(); ++i) EXPECT_LT(relative_error(got[i], want[i]), 1e-12) << "tensor " << i << ", x1 used: " << used[1];
  }
}

TEST(SwigluGateCuda, Float32MatchesTheFloat64OpsOnManyRows) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device on this machine";
  // More rows than one launch's blocks cover (the grid-stride loops wrap), width 300 over 256 threads.
  torch::manual_seed(10);
  const auto o = torch::dtype(torch::kFloat64);
  std::vector<torch::Tensor> in{torch::randn({4, 3000, 300}, o) * 4, torch::randn({4, 3000, 300}, o),
                                torch::randn({4, 3000, 300}, o),     torch::rand({4, 3000}, o),
                                torch::rand({4, 3000}, o) - 0.5,     torch::rand({4, 3000}, o)};
  std::vector<torch::Tensor> in32;
  for (const auto& t : in) in32.push_back(t.to(torch::kCUDA, torch::kFloat32));
  expect_fused_node(in32[0], in32[1]);
  const auto got = test::swiglu_forward_and_grads(in32, true, {true, true, true});
  const auto want = test::swiglu_forward_and_grads(in, false, {true, true, true});
  for (size_t i = 0; i < got.size(); ++i) EXPECT_LT(relative_error(got[i], want[i]), 1e-5) << "tensor " << i;
}

}  // namespace
}  // namespace loom
