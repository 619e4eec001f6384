// The block kernel against a naive dense reference (float64): packed documents with boundaries
// inside tiles, padding rows with no visible key, GQA, sliding windows, cross blocks, and the
// log-sum-exp merge; on one intra-op thread and on two (query tiles then run in parallel and dK/dV
// are summed over per-thread parts).
#include "kernels/attention/block_attention.h"
#include "kernels/attention/local_attention.h"
#include "tests/test_util.h"

namespace loom {
namespace {

using test::IntraOpThreads;
using test::relative_error;

constexpr double kTol = 1e-10;

torch::Tensor visibility(const AttentionMask& m) {
  auto v = (m.q_doc.unsqueeze(1) == m.k_doc.unsqueeze(0)) & (m.q_doc >= 0).unsqueeze(1);
  const auto age = m.q_pos.unsqueeze(1) - m.k_pos.unsqueeze(0);
  if (m.causal) v &= age >= 0;
  if (m.window > 0) v &= age < m.window;
  return v;
}

// Dense attention with K/V heads repeated for GQA; empty rows give out 0 and lse -inf.
BlockOutput naive(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, const AttentionMask& m,
                  double scale) {
  const int64_t g = q.size(0) / k.size(0);
  const auto kk = k.repeat_interleave(g, 0), vv = v.repeat_interleave(g, 0);
  const auto vis = visibility(m).unsqueeze(0);
  const auto any = vis.any(-1);
  const auto s = torch::matmul(q, kk.transpose(1, 2)).mul(scale).masked_fill(vis.logical_not(), -1e300);
  const auto out = torch::matmul(torch::softmax(s, -1) * any.unsqueeze(-1), vv);
  const auto lse = torch::where(any, torch::logsumexp(s, -1), torch::full_like(any, -INFINITY, torch::kFloat64));
  return {out, lse};
}

// Three documents (lengths 7, 9, 4) and 3 padding slots; positions restart per document.
AttentionMask packed_mask(bool causal, int64_t window = 0) {
  std::vector<int64_t> pos, doc;
  const std::vector<int64_t> lengths = {7, 9, 4};
  for (size_t d = 0; d < lengths.size(); ++d)
    for (int64_t i = 0; i < lengths[d]; ++i) {
      pos.push_back(i);
      doc.push_back(static_cast<int64_t>(d));
    }
  for (int i = 0; i < 3; ++i) {
    pos.push_back(0);
    doc.push_back(-1);
  }
  AttentionMask m = AttentionMask::self(torch::tensor(pos), torch::tensor(doc), causal);
  m.window = window;
  return m;
}

torch::Tensor randn(std::vector<int64_t> shape) { return torch::randn(shape, torch::kFloat64); }

struct Case {
  int64_t hq, hkv;
  bool causal;
  int64_t window = 0;
  int threads = 1;
};

void PrintTo(const Case& c, std::ostream* os) {
  *os << "Hq=" << c.hq << " Hkv=" << c.hkv << (c.causal ? " causal" : " full") << " window " << c.window << ", "
      << c.threads << " thread(s)";
}

class PackedAttention : public ::testing::TestWithParam<Case> {};

TEST_P(PackedAttention, ForwardMatchesDenseReference) {
  torch::manual_seed(1);
  const auto [hq, hkv, causal, window, threads] = GetParam();
  const IntraOpThreads on(threads);
  const AttentionMask m = packed_mask(causal, window);
  const int64_t n = m.q_pos.size(0), d = 8;
  const auto q = randn({hq, n, d}), k = randn({hkv, n, d}), v = randn({hkv, n, d});
  for (int64_t tile : {4, 5, 64}) {
    const BlockOutput got = block_forward(q, k, v, m, 0.35, tile);
    const BlockOutput want = naive(q, k, v, m, 0.35);
    EXPECT_LT(relative_error(got.out, want.out), kTol) << "tile " << tile;
    const auto real = m.q_doc >= 0;
    EXPECT_LT(relative_error(got.lse.index({torch::indexing::Slice(), real}), want.lse.index({torch::indexing::Slice(), real})), kTol);
    EXPECT_TRUE(torch::isneginf(got.lse.index({torch::indexing::Slice(), real.logical_not()})).all().item<bool>())
        << "padding rows see no key: lse must be -inf";
    EXPECT_EQ(got.out.index({torch::indexing::Slice(), real.logical_not()}).abs().max().item<double>(), 0.0);
  }
}

TEST_P(PackedAttention, GradientsMatchAutogradOfDenseReference) {
  torch::manual_seed(2);
  const auto [hq, hkv, causal, window, threads] = GetParam();
  const IntraOpThreads on(threads);
  const AttentionMask m = packed_mask(causal, window);
  const int64_t n = m.q_pos.size(0), d = 8;
  auto q = randn({hq, n, d}).requires_grad_(), k = randn({hkv, n, d}).requires_grad_(), v = randn({hkv, n, d}).requires_grad_();
  const auto dout = randn({hq, n, d});
  (naive(q, k, v, m, 0.35).out * dout).sum().backward();
  const auto want_dq = q.grad().clone(), want_dk = k.grad().clone(), want_dv = v.grad().clone();
  for (int64_t tile : {4, 5, 64}) {
    const BlockOutput fwd = block_forward(q.detach(), k.detach(), v.detach(), m, 0.35, tile);
    const BlockGrads got = block_backward(dout, q.detach(), k.detach(), v.detach(), fwd.out, fwd.lse, m, 0.35, tile);
    EXPECT_LT(relative_error(got.dq, want_dq), kTol) << "tile " << tile;
    EXPECT_LT(relative_error(got.dk, want_dk), kTol) << "tile " << tile;
    EXPECT_LT(relative_error(got.dv, want_dv), kTol) << "tile " << tile;
  }
  for (auto* t : {&q, &k, &v}) t->mutable_grad() = torch::Tensor();
  (local_attention(q, k, v, m, 0.35) * dout).sum().backward();
  EXPECT_LT(relative_error(q.grad(), want_dq), kTol) << "through the autograd function";
  EXPECT_LT(relative_error(k.grad(), want_dk), kTol);
  EXPECT_LT(relative_error(v.grad(), want_dv), kTol);
}

INSTANTIATE_TEST_SUITE_P(HeadsAndMasks, PackedAttention,
                         ::testing::Values(Case{4, 4, true}, Case{4, 2, true}, Case{6, 1, true}, Case{4, 2, false},
                                           Case{4, 2, true, 3}, Case{4, 1, true, 6}, Case{4, 2, true, 0, 2},
                                           Case{6, 1, true, 0, 2}, Case{4, 2, false, 0, 2}, Case{4, 1, true, 6, 2}),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return "Hq" + std::to_string(info.param.hq) + "Hkv" + std::to_string(info.param.hkv) +
                                  (info.param.causal ? "Causal" : "Full") +
                                  (info.param.window ? "Window" + std::to_string(info.param.window) : "") +
                                  (info.param.threads > 1 ? "Threads" + std::to_string(info.param.threads) : "");
                         });

// Float32, whose tile products go to oneDNN's sgemm where the build has it (tile_gemm.h): the same
// kernel against the float64 reference at float32's precision, on one thread and on two.
TEST(BlockAttention, Float32TileProductsMatchTheFloat64Reference) {
  torch::manual_seed(5);
  const AttentionMask m = packed_mask(true);
  const int64_t n = m.q_pos.size(0), d = 8;
  const auto q = randn({4, n, d}), k = randn({2, n, d}), v = randn({2, n, d}), dout = randn({4, n, d});
  auto qr = q.clone().requires_grad_(), kr = k.clone().requires_grad_(), vr = v.clone().requires_grad_();
  const BlockOutput want = naive(qr, kr, vr, m, 0.35);
  (want.out * dout).sum().backward();
  const auto f32 = [](const torch::Tensor& t) { return t.to(torch::kFloat32); };
  for (int threads : {1, 2}) {
    const IntraOpThreads on(threads);
    for (int64_t tile : {4, 5, 64}) {
      const BlockOutput got = block_forward(f32(q), f32(k), f32(v), m, 0.35, tile);
      ASSERT_EQ(got.out.scalar_type(), torch::kFloat32);
      EXPECT_LT(relative_error(got.out.to(torch::kFloat64), want.out.detach()), 1e-5) << "tile " << tile;
      const BlockGrads g = block_backward(f32(dout), f32(q), f32(k), f32(v), got.out, got.lse, m, 0.35, tile);
      EXPECT_LT(relative_error(g.dq.to(torch::kFloat64), qr.grad()), 1e-5) << "tile " << tile << ", " << threads << " thread(s)";
      EXPECT_LT(relative_error(g.dk.to(torch::kFloat64), kr.grad()), 1e-5) << "tile " << tile << ", " << threads << " thread(s)";
      EXPECT_LT(relative_error(g.dv.to(torch::kFloat64), vr.grad()), 1e-5) << "tile " << tile << ", " << threads << " thread(s)";
    }
  }
}

// Queries of one block against keys of another, as ring steps see them: some rows have no visible key.
TEST(BlockAttention, CrossBlockWithEmptyRowsForwardAndBackward) {
  torch::manual_seed(3);
  const AttentionMask m{torch::tensor({0, 1, 2, 3, 0, 1}), torch::tensor({0, 0, 0, 0, 1, 1}),
                        torch::tensor({2, 3, 4, 0, 1, 2, 3}), torch::tensor({0, 0, 0, 1, 1, 1, 2}), true};
  const auto q = randn({4, 6, 8}), k = randn({2, 7, 8}), v = randn({2, 7, 8}), dout = randn({4, 6, 8});
  const BlockOutput got = block_forward(q, k, v, m, 0.5, 3);
  const BlockOutput want = naive(q, k, v, m, 0.5);
  EXPECT_LT(relative_error(got.out, want.out), kTol);
  EXPECT_TRUE(torch::isneginf(got.lse.select(1, 0)).all().item<bool>()) << "row 0 (position 0) sees no key";

  auto qr = q.clone().requires_grad_(), kr = k.clone().requires_grad_(), vr = v.clone().requires_grad_();
  (naive(qr, kr, vr, m, 0.5).out * dout).sum().backward();
  const BlockGrads g = block_backward(dout, q, k, v, got.out, got.lse, m, 0.5, 3);
  EXPECT_FALSE(torch::isnan(g.dq).any().item<bool>());
  EXPECT_LT(relative_error(g.dq, qr.grad()), kTol);
  EXPECT_LT(relative_error(g.dk, kr.grad()), kTol);
  EXPECT_LT(relative_error(g.dv, vr.grad()), kTol);
  const BlockGrads dq_only = block_backward_from_delta(dout, q, k, v, output_delta(dout, got.out), got.lse, m, 0.5, 3, false);
  EXPECT_TRUE(torch::equal(dq_only.dq, g.dq)) << "skipping dk/dv leaves dq as it was";
  EXPECT_FALSE(dq_only.dk.defined());
  EXPECT_FALSE(dq_only.dv.defined());
}

// Attention over all keys equals the merge of attention over two disjoint key halves, and the
// per-half backward with the merged (out, lse) gives partial gradients that sum to the whole.
TEST(BlockAttention, MergeOfKeyHalvesEqualsWholeAndGradientsAreExactPartials) {
  torch::manual_seed(4);
  const AttentionMask whole = packed_mask(true);
  const int64_t n = whole.q_pos.size(0), split = 10;
  const auto q = randn({4, n, 8}), k = randn({2, n, 8}), v = randn({2, n, 8}), dout = randn({4, n, 8});
  auto half = [&](int64_t b, int64_t e) {
    return AttentionMask{whole.q_pos, whole.q_doc, whole.k_pos.slice(0, b, e), whole.k_doc.slice(0, b, e), true};
  };
  const auto a = block_forward(q, k.slice(1, 0, split), v.slice(1, 0, split), half(0, split), 0.4, 4);
  const auto b = block_forward(q, k.slice(1, split), v.slice(1, split), half(split, n), 0.4, 4);
  const BlockOutput merged = merge_partials(a, b);
  const BlockOutput full = block_forward(q, k, v, whole, 0.4, 4);
  EXPECT_LT(relative_error(merged.out, full.out), kTol);
  EXPECT_TRUE(torch::equal(torch::isneginf(merged.lse), torch::isneginf(full.lse)));
  const auto finite = torch::isfinite(full.lse);
  EXPECT_LT(relative_error(merged.lse.masked_select(finite), full.lse.masked_select(finite)), kTol);

  const auto ga = block_backward(dout, q, k.slice(1, 0, split), v.slice(1, 0, split), merged.out, merged.lse, half(0, split), 0.4, 4);
  const auto gb = block_backward(dout, q, k.slice(1, split), v.slice(1, split), merged.out, merged.lse, half(split, n), 0.4, 4);
  const auto gf = block_backward(dout, q, k, v, full.out, full.lse, whole, 0.4, 4);
  EXPECT_LT(relative_error(ga.dq + gb.dq, gf.dq), kTol);
  EXPECT_LT(relative_error(torch::cat({ga.dk, gb.dk}, 1), gf.dk), kTol);
  EXPECT_LT(relative_error(torch::cat({ga.dv, gb.dv}, 1), gf.dv), kTol);
}

TEST(BlockAttention, VisiblePairsCountsTheMask) {
  for (bool causal : {true, false}) {
    const AttentionMask m = packed_mask(causal);
    EXPECT_EQ(visible_pairs(m), visibility(m).sum().item<int64_t>());
  }
  for (int64_t window : {1, 3, 8}) {
    const AttentionMask m = packed_mask(true, window);
    EXPECT_EQ(visible_pairs(m), visibility(m).sum().item<int64_t>()) << "window " << window;
  }
  EXPECT_EQ(visible_pairs(packed_mask(true)), 7 * 8 / 2 + 9 * 10 / 2 + 4 * 5 / 2);
}

}  // namespace
}  // namespace loom
