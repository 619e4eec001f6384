// LaCT's hand-written fast-weight update against autograd (float64).
#include <functional>

#include "runtime/model/fast_weight_scan.h"
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

// f(x) = W1 (SiLU(W0 x) ⊙ (W2 x)) in plain LibTorch ops, independent of the fused gate Loom uses.
torch::Tensor reference_f(const FastWeights& w, const torch::Tensor& x) {
  const auto h = torch::silu(torch::bmm(x, w.w0.transpose(1, 2))) * torch::bmm(x, w.w2.transpose(1, 2));
  return torch::bmm(h, w.w1.transpose(1, 2));
}

// The gradient of Σ_i η_i ⟨f(k_i), v_i⟩ with respect to one matrix, by autograd.
torch::Tensor autograd_direction(const Chunk& c, int matrix, const torch::Tensor& lr) {
  FastWeights w{c.w.w0.clone(), c.w.w1.clone(), c.w.w2.clone()};
  torch::Tensor& target = matrix == 0 ? w.w0 : matrix == 1 ? w.w1 : w.w2;
  target.requires_grad_();
  const auto objective = (lr.unsqueeze(-1) * reference_f(w, c.k) * c.v).sum();
  return torch::autograd::grad({objective}, {target})[0];
}

TEST(FastWeights, ApplyingTheWeightsMatchesTheReferenceForwardAndBackward) {
  const Chunk c = random_chunk();
  const auto grads_of = [&](const std::function<torch::Tensor(const FastWeights&, const torch::Tensor&)>& f) {
    FastWeights w{c.w.w0.clone().requires_grad_(), c.w.w1.clone().requires_grad_(), c.w.w2.clone().requires_grad_()};
    const auto x = c.k.clone().requires_grad_();
    const auto out = f(w, x);
    (out * c.v).sum().backward();
    return std::vector<torch::Tensor>{out.detach(), x.grad(), w.w0.grad(), w.w1.grad(), w.w2.grad()};
  };
  const auto got = grads_of(apply_fast_weights), want = grads_of(reference_f);
  for (size_t i = 0; i < got.size(); ++i) EXPECT_LT(test::relative_error(got[i], want[i]), 1e-12) << "output " << i;
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

namespace loom {
namespace {

struct Sequence {
  FastWeights w;
  torch::Tensor q, k, v, lr0, lr1, lr2, beta, docs;
};

// Two heads, 23 tokens: document 0 has 14 tokens, document 1 has 9; chunks of 4.
Sequence random_sequence() {
  torch::manual_seed(8);
  const auto o = torch::dtype(torch::kFloat64);
  const int64_t b = 2, n = 23, d = 4, dh = 5;
  Sequence s{{torch::randn({b, dh, d}, o), torch::randn({b, d, dh}, o), torch::randn({b, dh, d}, o)},
             torch::randn({b, n, d}, o), torch::randn({b, n, d}, o), torch::randn({b, n, d}, o),
             0.1 * torch::rand({b, n}, o), 0.1 * torch::rand({b, n}, o), 0.1 * torch::rand({b, n}, o),
             torch::rand({b, n}, o), torch::zeros({n}, torch::kInt64)};
  s.docs.narrow(0, 14, 9).fill_(1);
  return s;
}

torch::Tensor scan(const Sequence& s, const FastWeightScanOptions& o, bool momentum = true) {
  return fast_weight_scan(s.w, s.q, s.k, s.v, s.lr0, s.lr1, s.lr2, momentum ? s.beta : torch::Tensor(), s.docs, o);
}

const FastWeightScanOptions kChunk4{4, false, true};

TEST(FastWeightScan, ZeroRatesReadTheInitialWeightsEverywhere) {
  Sequence s = random_sequence();
  s.lr0.zero_(), s.lr1.zero_(), s.lr2.zero_();
  for (const bool muon : {false, true}) {
    EXPECT_LT(test::relative_error(scan(s, {4, muon, true}), apply_fast_weights(s.w, s.q)), 1e-12) << "muon " << muon;
  }
}

TEST(FastWeightScan, SecondChunkReadsTheFirstChunksUpdate) {
  const Sequence s = random_sequence();
  const auto first = [](const torch::Tensor& t) { return t.narrow(1, 0, 4); };
  const FastWeights d = descent_directions(s.w, first(s.k), first(s.v), first(s.lr0), first(s.lr1), first(s.lr2));
  const FastWeights updated{s.w.w0 + d.w0, s.w.w1 + d.w1, s.w.w2 + d.w2};
  const auto want = apply_fast_weights(updated, s.q.narrow(1, 4, 4));
  EXPECT_LT(test::relative_error(scan(s, {4, false, false}, false).narrow(1, 4, 4), want), 1e-12);
}

TEST(FastWeightScan, NoInformationFlowsBackwardsOrAcrossDocuments) {
  const Sequence s = random_sequence();
  const auto base = scan(s, kChunk4);
  // A change of the keys at position 5 (chunk 1 of document 0) shows from chunk 2 (position 8) on,
  // and never in document 1.
  Sequence changed = s;
  changed.k = s.k.clone();
  changed.k.select(1, 5).add_(1.0);
  const auto out = scan(changed, kChunk4);
  EXPECT_TRUE(torch::equal(out.narrow(1, 0, 8), base.narrow(1, 0, 8))) << "positions before chunk 2";
  EXPECT_GT((out.narrow(1, 8, 4) - base.narrow(1, 8, 4)).abs().max().item<double>(), 1e-6);
  EXPECT_TRUE(torch::equal(out.narrow(1, 14, 9), base.narrow(1, 14, 9))) << "document 1";
  // Document 1 alone gives what it gives packed behind document 0.
  const auto tail = [](const torch::Tensor& t) { return t.narrow(1, 14, 9); };
  const auto alone = fast_weight_scan(s.w, tail(s.q), tail(s.k), tail(s.v), tail(s.lr0), tail(s.lr1), tail(s.lr2),
                                      tail(s.beta), torch::zeros({9}, torch::kInt64), kChunk4);
  EXPECT_LT(test::relative_error(alone, base.narrow(1, 14, 9)), 1e-12);
}

TEST(FastWeightScan, TheLastPartialChunkOnlyReads) {
  const Sequence s = random_sequence();
  Sequence changed = s;
  changed.v = s.v.clone();
  changed.v.narrow(1, 12, 2).add_(1.0);  // document 0's last chunk: positions 12-13
  EXPECT_TRUE(torch::equal(scan(changed, kChunk4), scan(s, kChunk4)));
}

TEST(FastWeightScan, WeightNormKeepsTheInitialRowNorms) {
  // With huge rates the weights grow without bound unless the norm puts every row back to its
  // initial length; W1's rows then keep their norms, so a query's output stays bounded by them.
  Sequence s = random_sequence();
  s.lr0.fill_(30.0), s.lr1.fill_(30.0), s.lr2.fill_(30.0);
  const double with_norm = scan(s, {4, false, true}, false).abs().max().item<double>();
  const double without = scan(s, {4, false, false}, false).abs().max().item<double>();
  const double initial = apply_fast_weights(s.w, s.q).abs().max().item<double>();
  std::printf("largest output: initial weights %.3g, normed %.3g, un-normed %.3g\n", initial, with_norm, without);
  EXPECT_GT(without, 100 * with_norm);
}

}  // namespace
}  // namespace loom
