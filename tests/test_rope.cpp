// RoPE against the direct per-element formula, and its defining property: scores depend only on
// the distance between positions.
#include "runtime/model/rope.h"
#include "tests/test_util.h"

namespace loom {
namespace {

TEST(Rope, MatchesDirectFormula) {
  torch::manual_seed(0);
  const int64_t n = 5, h = 3, d = 8;
  const double theta = 10000.0;
  const auto x = torch::randn({n, h, d}, torch::kFloat64);
  const auto pos = torch::tensor({0, 1, 7, 300, 65535});
  const auto got = apply_rope(x, pos, theta);
  const auto xa = x.accessor<double, 3>();
  const auto ga = got.accessor<double, 3>();
  for (int64_t t = 0; t < n; ++t)
    for (int64_t head = 0; head < h; ++head)
      for (int64_t i = 0; i < d / 2; ++i) {
        const double angle = static_cast<double>(pos[t].item<int64_t>()) * std::pow(theta, -2.0 * i / d);
        const double x1 = xa[t][head][i], x2 = xa[t][head][i + d / 2];
        EXPECT_NEAR(ga[t][head][i], x1 * std::cos(angle) - x2 * std::sin(angle), 1e-12);
        EXPECT_NEAR(ga[t][head][i + d / 2], x2 * std::cos(angle) + x1 * std::sin(angle), 1e-12);
      }
}

TEST(Rope, ScoresDependOnlyOnRelativePosition) {
  torch::manual_seed(1);
  const auto q = torch::randn({1, 1, 16}, torch::kFloat64), k = torch::randn({1, 1, 16}, torch::kFloat64);
  auto score = [&](int64_t pq, int64_t pk) {
    return (apply_rope(q, torch::tensor({pq}), 500.0) * apply_rope(k, torch::tensor({pk}), 500.0)).sum().item<double>();
  };
  EXPECT_NEAR(score(10, 3), score(107, 100), 1e-10);
  EXPECT_NEAR(score(5, 5), (q * k).sum().item<double>(), 1e-12);
  EXPECT_GT(std::fabs(score(10, 3) - score(10, 4)), 1e-6) << "different distances must differ";
}

}  // namespace
}  // namespace loom
