// The fused float32 softmax steps of the block kernel against the same steps as LibTorch ops in
// float64 (and the vectorised exp they use against std::exp): a mask against scores set to -inf, a
// row that has seen no key, rescaling, runs of rows of a larger state.
#include "kernels/attention/tile_softmax.h"

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

// Scores [2 heads, 3 rows, 37 keys] (a width that no vector length divides) and the pairs the mask
// hides, [3, 37], the same for both heads: a third of them, and all of row 1.
struct MaskedScores {
  torch::Tensor scores, hidden;

  // The scores with the hidden pairs at -inf: what the steps must take them as.
  torch::Tensor hidden_as_inf() const { return scores.masked_fill(hidden, -INFINITY); }
};

MaskedScores masked_scores() {
  auto hidden = torch::rand({3, 37}, torch::kFloat64) < 0.33;
  hidden[1].fill_(true);
  return {torch::randn({2, 3, 37}, torch::kFloat64) * 4, hidden};
}

torch::Tensor f32(const torch::Tensor& t) { return t.to(torch::kFloat32); }

TEST(TileSoftmax, OnlineStepsMatchTheUnfusedOps) {
  torch::manual_seed(2);
  // Reference state in float64 (the LibTorch path, scores masked beforehand), fused state in
  // float32 with the mask: two steps, the second with larger scores so that the first step's sums
  // are rescaled.
  auto max64 = torch::full({2, 3}, -INFINITY, torch::kFloat64), sum64 = torch::zeros({2, 3}, torch::kFloat64);
  auto o64 = torch::zeros({2, 3, 5}, torch::kFloat64);
  auto max32 = f32(max64), sum32 = f32(sum64), o32 = f32(o64);
  for (double offset : {0.0, 6.0}) {
    const MaskedScores s = masked_scores();
    auto p64 = s.hidden_as_inf() + offset;
    auto p32 = f32(s.scores + offset);
    softmax_step(p64, {}, max64, sum64, o64, std::numeric_limits<double>::lowest());
    softmax_step(p32, s.hidden, max32, sum32, o32, std::numeric_limits<float>::lowest());
    EXPECT_LT(relative_error(p32.to(torch::kFloat64), p64), kFloat32Tol);
    EXPECT_LT(relative_error(sum32.to(torch::kFloat64), sum64), kFloat32Tol);
    // o stands for the products with V: any values show the rescaling.
    o64 += torch::ones_like(o64);
    o32 += torch::ones_like(o32);
  }
  EXPECT_LT(relative_error(o32.to(torch::kFloat64), o64), kFloat32Tol);
  EXPECT_EQ(sum32.select(1, 1).abs().max().item<float>(), 0.0f) << "a row with no visible key sums to exactly 0";
  EXPECT_TRUE(torch::isfinite(max32).all().item<bool>());
}

TEST(TileSoftmax, BackwardStepsMatchTheUnfusedOps) {
  torch::manual_seed(4);
  const MaskedScores s = masked_scores();
  const auto lse64 = torch::randn({2, 3, 1}, torch::kFloat64) + 3;
  const auto dp64 = torch::randn({2, 3, 37}, torch::kFloat64), delta64 = torch::randn({2, 3, 1}, torch::kFloat64);
  auto p64 = s.hidden_as_inf(), p32 = f32(s.scores);
  exp_shifted(p64, {}, lse64);
  exp_shifted(p32, s.hidden, f32(lse64));
  EXPECT_LT(relative_error(p32.to(torch::kFloat64), p64), kFloat32Tol);
  EXPECT_EQ(p32.select(1, 1).abs().max().item<float>(), 0.0f) << "hidden scores give probability 0";
  auto ds64 = dp64.clone(), ds32 = f32(dp64);
  softmax_grad(ds64, delta64, p64);
  // A delta whose rows are not packed takes the LibTorch ops, with the same result.
  softmax_grad(ds32, f32(delta64).expand({2, 3, 2}).select(2, 1).unsqueeze(-1), p32);
  EXPECT_LT(relative_error(ds32.to(torch::kFloat64), ds64), kFloat32Tol);
}

// The block kernel hands the steps runs of rows of a query tile's state (views with the heads
// apart): those rows change as if the run stood alone, and the other rows not at all. Float32
// takes the fused loops, float64 the LibTorch ops.
TEST(TileSoftmax, StepsOnARunOfRowsUpdateThoseRowsInPlace) {
  torch::manual_seed(6);
  for (auto dtype : {torch::kFloat32, torch::kFloat64}) {
    const double lowest = dtype == torch::kFloat32 ? std::numeric_limits<float>::lowest() : std::numeric_limits<double>::lowest();
    const auto opts = torch::dtype(dtype);
    auto row_max = torch::randn({2, 5}, opts), row_sum = torch::rand({2, 5}, opts) + 1, o = torch::randn({2, 5, 4}, opts);
    const auto before = std::vector<torch::Tensor>{row_max.clone(), row_sum.clone(), o.clone()};
    const MaskedScores s = masked_scores();
    auto p_run = s.scores.to(dtype), p_alone = p_run.clone();
    const auto run = [](const torch::Tensor& t) { return t.slice(1, 1, 4); };  // rows 1-3 of 5
    auto max_alone = run(before[0]).clone(), sum_alone = run(before[1]).clone(), o_alone = run(before[2]).clone();
    softmax_step(p_run, s.hidden, run(row_max), run(row_sum), run(o), lowest);
    softmax_step(p_alone, s.hidden, max_alone, sum_alone, o_alone, lowest);
    EXPECT_TRUE(torch::equal(p_run, p_alone));
    EXPECT_TRUE(torch::equal(run(row_max), max_alone)) << dtype;
    EXPECT_TRUE(torch::equal(run(row_sum), sum_alone)) << dtype;
    EXPECT_TRUE(torch::equal(run(o), o_alone)) << dtype;
    for (int64_t r : {0, 4}) {
      EXPECT_TRUE(torch::equal(row_max.select(1, r), before[0].select(1, r))) << "row " << r << " " << dtype;
      EXPECT_TRUE(torch::equal(row_sum.select(1, r), before[1].select(1, r))) << "row " << r << " " << dtype;
      EXPECT_TRUE(torch::equal(o.select(1, r), before[2].select(1, r))) << "row " << r << " " << dtype;
    }
  }
}

}  // namespace
}  // namespace loom
