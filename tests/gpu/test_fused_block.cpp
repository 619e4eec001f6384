// The block kernel's GPU path (ATen's fused kernels, FlashAttention-2 and cuDNN, bf16) against the
// CPU kernel in float64 on the same bf16-rounded inputs. Skips where no GPU exists.
#include <gtest/gtest.h>

#include "kernels/attention/fused_block.h"
#include "kernels/attention/local_attention.h"
#include "tests/relative_error.h"

namespace loom {
namespace {

using test::relative_error;

bool have_gpu() { return torch::cuda::is_available(); }

// Positions restarting at every document, ids 0, 1, ... for documents of the given lengths.
std::pair<torch::Tensor, torch::Tensor> packed(const std::vector<int64_t>& lengths) {
  std::vector<int64_t> pos, doc;
  for (size_t d = 0; d < lengths.size(); ++d)
    for (int64_t i = 0; i < lengths[d]; ++i) {
      pos.push_back(i);
      doc.push_back(static_cast<int64_t>(d));
    }
  return {torch::tensor(pos), torch::tensor(doc)};
}

struct Inputs {
  torch::Tensor q, k, v, dout;  // bf16 on the GPU
  double scale;
};

Inputs random_inputs(int64_t hq, int64_t hkv, int64_t nq, int64_t nk, int64_t d) {
  const auto opt = torch::dtype(torch::kBFloat16).device(torch::kCUDA);
  return {torch::randn({hq, nq, d}).to(opt), torch::randn({hkv, nk, d}).to(opt), torch::randn({hkv, nk, d}).to(opt),
          torch::randn({hq, nq, d}).to(opt), 1.0 / std::sqrt(static_cast<double>(d))};
}

torch::Tensor f64(const torch::Tensor& t) { return t.cpu().to(torch::kFloat64); }

// Runs `check` once with each fused kernel this build has, the process-wide choice restored after.
template <class Check>
void for_each_kernel(const Check& check) {
  const FusedKernel before = fused_kernel();
  for (FusedKernel kernel : {FusedKernel::kFlash, FusedKernel::kCudnn}) {
    if (!fused_kernel_available(kernel)) continue;
    SCOPED_TRACE(fused_kernel_name(kernel));
    set_fused_kernel(kernel);
    check();
  }
  set_fused_kernel(before);
}

// Forward and backward of one block through each fused kernel against float64: asserts the GPU
// path was taken and agrees to bf16 accuracy; -inf rows (no visible key) must match exactly.
void expect_kernel_matches_float64(const Inputs& in, const AttentionMask& mask) {
  const auto fused = fused_block_forward(in.q, in.k, in.v, mask, in.scale);
  ASSERT_TRUE(fused.has_value()) << "the mask should be the fused kernel's";
  const BlockOutput ref = block_forward(f64(in.q), f64(in.k), f64(in.v), mask, in.scale);
  EXPECT_LT(relative_error(fused->out, ref.out), 2e-2);
  const auto empty = torch::isinf(ref.lse);
  EXPECT_TRUE(torch::equal(torch::isinf(fused->lse.cpu()), empty));
  const auto finite = empty.logical_not();
  EXPECT_LT((fused->lse.cpu().to(torch::kFloat64).masked_select(finite) - ref.lse.masked_select(finite)).abs().max().item<double>(), 2e-2);

  const auto delta = output_delta(f64(in.dout), ref.out);
  const BlockGrads want = block_backward_from_delta(f64(in.dout), f64(in.q), f64(in.k), f64(in.v), delta, ref.lse, mask, in.scale);
  // dq and dk against dv's scale: where every query sees one key they vanish (P = 1, dP = D), and
  // their rounding relative to zero would measure nothing.
  const double scale = want.dv.abs().max().item<double>();
  // The backward given O (local attention, ring) and given only D (TokenRing).
  for (const bool given_out : {true, false}) {
    SCOPED_TRACE(given_out ? "given O" : "given D");
    const OutputOrDelta known = given_out ? OutputOrDelta{ref.out.to(torch::kCUDA), {}} : OutputOrDelta{{}, delta.to(torch::kCUDA)};
    const auto grads = fused_block_backward(in.dout, in.q, in.k, in.v, known, ref.lse.to(torch::kCUDA), mask, in.scale);
    ASSERT_TRUE(grads.has_value());
    EXPECT_LT(relative_error(grads->dq, want.dq, scale), 3e-2);
    EXPECT_LT(relative_error(grads->dk, want.dk, scale), 3e-2);
    EXPECT_LT(relative_error(grads->dv, want.dv), 3e-2);
  }
}

void expect_matches_float64(const Inputs& in, const AttentionMask& mask) {
  for_each_kernel([&] { expect_kernel_matches_float64(in, mask); });
}

TEST(FusedBlock, CausalOneDocumentMhaAndGqa) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device on this machine";
  ASSERT_TRUE(fused_kernel_available(FusedKernel::kFlash)) << "a CUDA LibTorch without ATen's flash kernels";
  torch::manual_seed(1);
  for (auto [hq, hkv, d] : std::vector<std::array<int64_t, 3>>{{4, 4, 64}, {8, 2, 128}}) {
    const auto [pos, doc] = packed({1000});
    expect_matches_float64(random_inputs(hq, hkv, 1000, 1000, d), AttentionMask::self(pos, doc));
  }
}

TEST(FusedBlock, PackedDocumentsCausalAndNot) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device on this machine";
  torch::manual_seed(2);
  const auto [pos, doc] = packed({300, 1, 399, 257});
  for (bool causal : {true, false}) expect_matches_float64(random_inputs(8, 2, 957, 957, 64), AttentionMask::self(pos, doc, causal));
}

// Sliding windows (LaCT's window attention): one document, and packed documents shorter and longer
// than the window; every pair is a windowed diagonal or empty, so FlashAttention takes them all.
TEST(FusedBlock, SlidingWindows) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device on this machine";
  torch::manual_seed(7);
  for (const std::vector<int64_t>& docs : {std::vector<int64_t>{700}, std::vector<int64_t>{90, 1, 333, 200}}) {
    const auto [pos, doc] = packed(docs);
    AttentionMask mask = AttentionMask::self(pos, doc);
    mask.window = 100;
    expect_matches_float64(random_inputs(8, 2, pos.size(0), pos.size(0), 64), mask);
  }
}

// A zigzag shard pair of a 4-chunk sequence: rank 0's queries (chunks 0 and 3) against rank 1's keys
// (chunks 1 and 2), padding included: every pair of runs full or empty, padding rows empty.
TEST(FusedBlock, ZigzagShardsWithPadding) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device on this machine";
  torch::manual_seed(3);
  const int64_t c = 128;
  const auto chunk = [&](int64_t i) { return torch::arange(i * c, (i + 1) * c); };
  auto q_pos = torch::cat({chunk(0), chunk(3)}), k_pos = torch::cat({chunk(1), chunk(2)});
  auto q_doc = torch::zeros({2 * c}, torch::kInt64), k_doc = torch::zeros({2 * c}, torch::kInt64);
  q_doc.slice(0, 2 * c - 5).fill_(-1);  // the sequence's last 5 tokens are padding
  expect_matches_float64(random_inputs(4, 1, 2 * c, 2 * c, 64), {q_pos, q_doc, k_pos, k_doc, true});
  expect_matches_float64(random_inputs(4, 1, 2 * c, 2 * c, 64), {k_pos, k_doc, q_pos, q_doc, true});
}

// Runs of a single query or key (cuDNN refuses one against one; such pairs go to FlashAttention
// whichever kernel is chosen), against a long run on the other side.
TEST(FusedBlock, SingleQueryOrKeyRuns) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device on this machine";
  torch::manual_seed(6);
  const auto one = torch::full({1}, 5, torch::kInt64), many = torch::arange(300), doc1 = torch::zeros({1}, torch::kInt64),
             doc300 = torch::zeros({300}, torch::kInt64);
  expect_matches_float64(random_inputs(4, 2, 1, 300, 64), {one, doc1, many, doc300, false});
  expect_matches_float64(random_inputs(4, 2, 300, 1, 64), {many, doc300, one, doc1, false});
}

// Key rows overlapping the query rows without being them is beyond FlashAttention's masks: the
// tiled kernel takes it, on the GPU (float32 there, so it must agree to float32 accuracy).
TEST(FusedBlock, OtherMasksFallBackToTheTiledKernelOnTheGpu) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device on this machine";
  torch::manual_seed(4);
  const auto q_pos = torch::arange(0, 200), k_pos = torch::arange(100, 300), docs = torch::zeros({200}, torch::kInt64);
  const AttentionMask mask{q_pos, docs, k_pos, docs, true};
  const Inputs in = random_inputs(4, 2, 200, 200, 64);
  EXPECT_FALSE(fused_block_forward(in.q, in.k, in.v, mask, in.scale).has_value());
  const auto q = in.q.to(torch::kFloat32), k = in.k.to(torch::kFloat32), v = in.v.to(torch::kFloat32);
  const BlockOutput got = block_forward(q, k, v, mask, in.scale);
  const BlockOutput want = block_forward(f64(q), f64(k), f64(v), mask, in.scale);
  EXPECT_LT(relative_error(got.out, want.out), 1e-5);
}

// The autograd function the model uses, end to end on the GPU in bf16.
TEST(FusedBlock, LocalAttentionGradientsOnTheGpu) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device on this machine";
  torch::manual_seed(5);
  const auto [pos, doc] = packed({700, 324});
  const AttentionMask mask = AttentionMask::self(pos, doc);
  const Inputs in = random_inputs(8, 4, 1024, 1024, 128);
  auto run = [&](const torch::Tensor& q0, const torch::Tensor& k0, const torch::Tensor& v0) {
    auto q = q0.detach().requires_grad_(), k = k0.detach().requires_grad_(), v = v0.detach().requires_grad_();
    const auto out = local_attention(q, k, v, mask, in.scale);
    (out.to(torch::kFloat64) * in.dout.to(out.device()).to(torch::kFloat64)).sum().backward();
    return std::vector<torch::Tensor>{out, q.grad(), k.grad(), v.grad()};
  };
  const auto want = run(f64(in.q), f64(in.k), f64(in.v));
  for_each_kernel([&] {
    const auto got = run(in.q, in.k, in.v);
    for (size_t i = 0; i < got.size(); ++i) EXPECT_LT(relative_error(got[i], want[i]), 3e-2) << "output/dq/dk/dv " << i;
  });
}

}  // namespace
}  // namespace loom
