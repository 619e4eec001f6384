// The fused float32 softmax steps of the block kernel against the same steps as LibTorch ops in
// float64 (and the vectorised exp they use against std::exp): masked entries, a row that has seen no key, a row seeing its first key late, rescaling.
#include "parallel/attention/tile_softmax.h"

#include <cmath>
#include <limits>

#include "kernels/vector_exp.h"
#include "tests/test_util.h"

namespace loom {
namespace {

using test::relative_error;

constexpr double kFloat32Tol = 2e-6;

TEST(VectorExp, IsWithinFloatRoundingOfExp) {
  double worst = 0;
  for (double x = -87.0; x <= 88.0; x += 0.0137) {
    const double want = std::exp(static_cast<double>(static_cast<float>(x)));
    worst = std::max(worst, std::abs(vector_exp(static_cast<float>(x)) - want) / want);
  }
  EXPECT_LT(worst, 5e-7);
  EXPECT_EQ(vector_exp(0.0f), 1.0f);
  EXPECT_EQ(vector_exp(-std::numeric_limits<float>::infinity()), 0.0f);
  EXPECT_EQ(vector_exp(-100.0f), 0.0f);
  EXPECT_EQ(vector_exp(std::numeric_limits<float>::lowest()), 0.0f);
}

// Scores [2 heads, 3 rows, 37 keys] (a width that no vector length divides), -inf on a third of
// the entries, all of row 1 of head 0 masked.
torch::Tensor masked_scores() {
  auto s = torch::randn({2, 3, 37}, torch::kFloat64) * 4;
  s.masked_fill_(torch::rand({2, 3, 37}, torch::kFloat64) < 0.33, -INFINITY);
  s[0][1].fill_(-INFINITY);
  return s;
}

TEST(TileSoftmax, OnlineStepsMatchTheUnfusedOps) {
  torch::manual_seed(2);
  const auto f32 = [](const torch::Tensor& t) { return t.to(torch::kFloat32); };
  // Reference state in float64 (the LibTorch path), fused state in float32: two steps, the second
  // with larger scores so that the first step's sums are rescaled.
  auto max64 = torch::full({2, 3}, -INFINITY, torch::kFloat64), sum64 = torch::zeros({2, 3}, torch::kFloat64);
  auto o64 = torch::zeros({2, 3, 5}, torch::kFloat64);
  auto max32 = f32(max64), sum32 = f32(sum64), o32 = f32(o64);
  for (double offset : {0.0, 6.0}) {
    auto p64 = masked_scores() + offset;
    auto p32 = f32(p64);
    softmax_step(p64, max64, sum64, o64, std::numeric_limits<double>::lowest());
    softmax_step(p32, max32, sum32, o32, std::numeric_limits<float>::lowest());
    EXPECT_LT(relative_error(p32.to(torch::kFloat64), p64), kFloat32Tol);
    EXPECT_LT(relative_error(sum32.to(torch::kFloat64), sum64), kFloat32Tol);
    // o stands for the products with V: any values show the rescaling.
    o64 += torch::ones_like(o64);
    o32 += torch::ones_like(o32);
  }
  EXPECT_LT(relative_error(o32.to(torch::kFloat64), o64), kFloat32Tol);
  EXPECT_EQ(sum32[0][1].item<float>(), 0.0f) << "a row with no visible key sums to exactly 0";
  EXPECT_TRUE(torch::isfinite(max32).all().item<bool>());
}

TEST(TileSoftmax, BackwardStepsMatchTheUnfusedOps) {
  torch::manual_seed(4);
  const auto s64 = masked_scores(), lse64 = torch::randn({2, 3, 1}, torch::kFloat64) + 3;
  const auto dp64 = torch::randn({2, 3, 37}, torch::kFloat64), delta64 = torch::randn({2, 3, 1}, torch::kFloat64);
  auto p64 = s64.clone(), p32 = s64.to(torch::kFloat32);
  exp_shifted(p64, lse64);
  exp_shifted(p32, lse64.to(torch::kFloat32));
  EXPECT_LT(relative_error(p32.to(torch::kFloat64), p64), kFloat32Tol);
  EXPECT_EQ(p32[0][1].abs().max().item<float>(), 0.0f) << "masked scores give probability 0";
  auto ds64 = dp64.clone(), ds32 = dp64.to(torch::kFloat32);
  softmax_grad(ds64, delta64, p64);
  // A strided delta takes the LibTorch ops, with the same result.
  softmax_grad(ds32, delta64.to(torch::kFloat32).expand({2, 3, 2}).select(2, 1).unsqueeze(-1), p32);
  EXPECT_LT(relative_error(ds32.to(torch::kFloat64), ds64), kFloat32Tol);
}

}  // namespace
}  // namespace loom
