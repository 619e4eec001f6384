// LaCT's hand-written fast-weight update against autograd (float64).
#include "runtime/model/fast_weights.h"
#include "tests/test_util.h"

namespace loom {
namespace {

struct Chunk {
  FastWeights w;
  torch::Tensor k, v, lr0, lr1, lr2;
};

Chunk random_chunk() {
  torch::manual_seed(6);
  const auto o = torch::dtype(torch::kFloat64);
  const int64_t b = 3, n = 7, d = 5, dh = 6;
  return {{torch::randn({b, dh, d}, o), torch::randn({b, d, dh}, o), torch::randn({b, dh, d}, o)},
          torch::randn({b, n, d}, o), torch::randn({b, n, d}, o), torch::rand({b, n}, o), torch::rand({b, n}, o),
          torch::rand({b, n}, o)};
}

// The gradient of Σ_i η_i ⟨f(k_i), v_i⟩ with respect to one matrix, by autograd.
torch::Tensor autograd_direction(const Chunk& c, int matrix, const torch::Tensor& lr) {
  FastWeights w{c.w.w0.clone(), c.w.w1.clone(), c.w.w2.clone()};
  torch::Tensor& target = matrix == 0 ? w.w0 : matrix == 1 ? w.w1 : w.w2;
  target.requires_grad_();
  const auto objective = (lr.unsqueeze(-1) * apply_fast_weights(w, c.k) * c.v).sum();
  return torch::autograd::grad({objective}, {target})[0];
}

TEST(FastWeights, DescentDirectionsAreTheNegativeGradientsOfTheInnerLoss) {
  const Chunk c = random_chunk();
  const FastWeights d = descent_directions(c.w, c.k, c.v, c.lr0, c.lr1, c.lr2);
  EXPECT_LT(test::relative_error(d.w0, autograd_direction(c, 0, c.lr0)), 1e-12);
  EXPECT_LT(test::relative_error(d.w1, autograd_direction(c, 1, c.lr1)), 1e-12);
  EXPECT_LT(test::relative_error(d.w2, autograd_direction(c, 2, c.lr2)), 1e-12);
}

TEST(FastWeights, ZeroRatesChangeNothing) {
  const Chunk c = random_chunk();
  const auto zero = torch::zeros_like(c.lr0);
  const FastWeights d = descent_directions(c.w, c.k, c.v, zero, zero, zero);
  for (const auto& t : {d.w0, d.w1, d.w2}) EXPECT_EQ(t.abs().max().item<double>(), 0.0);
}

TEST(FastWeights, AStepAlongTheDirectionsRaisesTheObjective) {
  const Chunk c = random_chunk();
  const auto objective = [&](const FastWeights& w) {
    return (c.lr0.unsqueeze(-1) * apply_fast_weights(w, c.k) * c.v).sum().item<double>();
  };
  const FastWeights d = descent_directions(c.w, c.k, c.v, c.lr0, c.lr0, c.lr0);
  const double eps = 1e-4;
  const FastWeights stepped{c.w.w0 + eps * d.w0, c.w.w1 + eps * d.w1, c.w.w2 + eps * d.w2};
  EXPECT_GT(objective(stepped), objective(c.w));
}

}  // namespace
}  // namespace loom
