// The precision policy and the master weights: what each train.dtype resolves to, float32 masters
// of bfloat16 parameters that keep updates too small for bfloat16, and the device choice.
#include <torch/cuda.h>

#include "optim/master_weights.h"
#include "optim/training_optimizer.h"
#include "runtime/core/device.h"
#include "runtime/core/precision.h"
#include "tests/test_util.h"

namespace loom {
namespace {

TEST(Precision, EachDtypeResolvesToItsRoles) {
  Config c;
  c.train.dtype = "float32";
  Precision p = resolve_precision(c);
  EXPECT_EQ(p.param, torch::kFloat32);
  EXPECT_EQ(p.master, torch::kFloat32);
  EXPECT_EQ(p.grad_reduce, torch::kFloat32);
  c.train.dtype = "float64";
  p = resolve_precision(c);
  EXPECT_EQ(p.master, torch::kFloat64);
  EXPECT_EQ(p.grad_reduce, torch::kFloat64);
  EXPECT_EQ(p.accumulate, torch::kFloat64);
  c.train.dtype = "bfloat16";
  p = resolve_precision(c);
  EXPECT_EQ(p.param, torch::kBFloat16);
  EXPECT_EQ(p.compute, torch::kBFloat16);
  EXPECT_EQ(p.master, torch::kFloat32);
  EXPECT_EQ(p.grad_reduce, torch::kFloat32);
  EXPECT_EQ(p.accumulate, torch::kFloat32);
  c.train.reduce_dtype = "bfloat16";
  EXPECT_EQ(resolve_precision(c).grad_reduce, torch::kBFloat16);
  EXPECT_NE(p.describe().find("bfloat16 parameters and compute, float32 master weights"), std::string::npos) << p.describe();
}

// A bfloat16 weight of 1 moves only in steps of 2^-7; its float32 master takes AdamW steps of 1e-4
// (lr) from the first step on, and the weight follows once they add up to half a step.
TEST(MasterWeights, Float32MastersKeepUpdatesTooSmallForBfloat16) {
  auto w = torch::ones({4, 4}, torch::kBFloat16).requires_grad_();
  MasterWeights masters({{"w", w}}, torch::kFloat32);
  ASSERT_TRUE(masters.separate());
  const torch::Tensor& m = masters.masters().front().second;
  EXPECT_EQ(m.scalar_type(), torch::kFloat32);
  TrainConfig t;
  t.weight_decay = 0;
  TrainingOptimizer optimizer(masters.masters(), t);
  for (const auto& [name, state] : optimizer.state())
    if (state.is_floating_point()) EXPECT_EQ(state.scalar_type(), torch::kFloat32) << name;
  int steps_until_the_weight_moved = 0;
  for (int step = 1; step <= 60 && steps_until_the_weight_moved == 0; ++step) {
    masters.zero_grads();
    w.mutable_grad() = torch::ones_like(w);
    masters.take_grads();
    EXPECT_EQ(m.grad().scalar_type(), torch::kFloat32);
    optimizer.step(1e-4);
    masters.write_back();
    EXPECT_NEAR(m[0][0].item<double>(), 1.0 - 1e-4 * step, 1e-6) << "step " << step;
    if (w[0][0].item<double>() != 1.0) steps_until_the_weight_moved = step;
  }
  EXPECT_GE(steps_until_the_weight_moved, 20) << "bfloat16 rounds away the first updates";
  EXPECT_LE(steps_until_the_weight_moved, 40) << "the master's sum reaches the weight";
}

TEST(MasterWeights, WithOneDtypeTheMastersAreTheParameters) {
  auto w = torch::ones({3}, torch::kFloat64).requires_grad_();
  MasterWeights masters({{"w", w}}, torch::kFloat64);
  EXPECT_FALSE(masters.separate());
  EXPECT_TRUE(masters.masters().front().second.is_same(w));
}

TEST(Device, AutoTakesAGpuWhereOneIsVisibleAndCudaWithoutOneIsAnError) {
  if (torch::cuda::is_available()) GTEST_SKIP() << "this machine has a GPU";
  EXPECT_TRUE(choose_device("auto", 3).is_cpu());
  EXPECT_TRUE(choose_device("cpu", 0).is_cpu());
  const std::string error = test::error_of([] { choose_device("cuda", 0); });
  EXPECT_NE(error.find("train.device = cuda, but no GPU is visible"), std::string::npos) << error;
}

}  // namespace
}  // namespace loom
