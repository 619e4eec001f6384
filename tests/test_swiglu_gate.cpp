// The fused CPU gate of the fast-weight SwiGLU and its inner-loss gradient rows against the same
// formulas as LibTorch ops differentiated by autograd: forward and every input's gradient, in
// float64 and float32, with an output whose gradient is absent.
#include "runtime/model/swiglu_gate.h"

#include "tests/swiglu_gate_check.h"
#include "tests/test_util.h"

namespace loom {
namespace {

using test::IntraOpThreads;
using test::relative_error;
using test::swiglu_forward_and_grads;
using test::swiglu_inputs;

TEST(SwigluGate, FusedMatchesTheLibTorchOpsInFloat64) {
  const auto in = swiglu_inputs(torch::kFloat64);
  for (const std::vector<bool>& used : {std::vector<bool>{true, true, true}, std::vector<bool>{true, false, true}}) {
    const auto got = swiglu_forward_and_grads(in, true, used), want = swiglu_forward_and_grads(in, false, used);
    for (size_t i = 0; i < got.size(); ++i)
      EXPECT_LT(relative_error(got[i], want[i]), 1e-12) << "tensor " << i << ", x1 used: " << used[1];
  }
}

TEST(SwigluGate, FusedFloat32MatchesTheFloat64Ops) {
  const auto got = swiglu_forward_and_grads(swiglu_inputs(torch::kFloat32), true, {true, true, true});
  const auto want = swiglu_forward_and_grads(swiglu_inputs(torch::kFloat64), false, {true, true, true});
  for (size_t i = 0; i < got.size(); ++i) EXPECT_LT(relative_error(got[i], want[i]), 1e-5) << "tensor " << i;
}

TEST(SwigluGate, RunsOnTwoThreads) {
  const IntraOpThreads two(2);
  // Rows enough for the parallel split: 64 x 300 of width 37.
  torch::manual_seed(10);
  const auto o = torch::dtype(torch::kFloat64);
  const std::vector<torch::Tensor> in{torch::randn({64, 300, 37}, o), torch::randn({64, 300, 37}, o),
                                      torch::randn({64, 300, 37}, o), torch::rand({64, 300}, o),
                                      torch::rand({64, 300}, o),      torch::rand({64, 300}, o)};
  const auto got = swiglu_forward_and_grads(in, true, {true, true, true});
  const auto want = swiglu_forward_and_grads(in, false, {true, true, true});
  for (size_t i = 0; i < got.size(); ++i) EXPECT_LT(relative_error(got[i], want[i]), 1e-12) << "tensor " << i;
}

}  // namespace
}  // namespace loom
