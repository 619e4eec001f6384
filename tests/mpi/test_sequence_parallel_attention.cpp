// Ring (pass-KV) and TokenRing (pass-Q) attention against attention of the whole sequence on one
// rank: forward and gradients in float64 to 1e-10, causal (zigzag) and non-causal (contiguous),
// MHA and GQA, one document and packed documents with boundaries inside chunks, lengths that do not
// divide by 2N, sliding windows (with halo attention too); and the bytes each sends per direction
// against the formulas of docs/sequence-parallelism.md. The same tests run on CPU tensors over MPI (loom_mpi_tests) and on
// CUDA tensors over NCCL (loom_nccl_tests, where the parameterised cases also run in bf16 through
// the fused kernels, against float64 on the same bf16-rounded inputs).
#include <gtest/gtest.h>

#include "parallel/sequence/halo_attention.h"
#include "kernels/attention/local_attention.h"
#include "parallel/sequence/ring_attention.h"
#include "parallel/sequence/token_ring_attention.h"
#include "tests/mpi/test_ranks.h"
#include "tests/relative_error.h"

namespace loom {
namespace {

struct Case {
  const char* name;
  bool causal;
  int64_t q_heads, kv_heads;
  std::vector<int64_t> documents;  // lengths, packed in order
  int64_t window = 0;              // > 0: sliding-window attention (causal)
};

// Failure messages name the case instead of dumping its bytes.
void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

struct Sequence {
  torch::Tensor q, k, v, dout, pos, doc;
};

constexpr int64_t kHeadDim = 8;

Sequence make_sequence(const Case& c, int64_t head_dim = kHeadDim) {
  torch::manual_seed(42);  // the same on every rank
  int64_t length = 0;
  std::vector<int64_t> pos, doc;
  for (size_t d = 0; d < c.documents.size(); ++d)
    for (int64_t i = 0; i < c.documents[d]; ++i, ++length) {
      pos.push_back(i);
      doc.push_back(static_cast<int64_t>(d));
    }
  const auto f64 = torch::kFloat64;
  return {torch::randn({c.q_heads, length, head_dim}, f64), torch::randn({c.kv_heads, length, head_dim}, f64),
          torch::randn({c.kv_heads, length, head_dim}, f64), torch::randn({c.q_heads, length, head_dim}, f64),
          torch::tensor(pos, torch::kInt64), torch::tensor(doc, torch::kInt64)};
}

using test::relative_error;

// The test's ranks and its two sequence-parallel groups; skips where the binary's backend cannot run.
class SpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!world.skip.empty()) GTEST_SKIP() << world.skip;
    forward = world.group("sp");
    back = world.group("sp_back");
  }
  // Rank `rank`'s shard of `t` on the binary's device, as a leaf that collects its gradient.
  torch::Tensor shard(const SequenceLayout& layout, const torch::Tensor& t, int64_t rank) const {
    return world.on_device(layout.take(t, 1, rank)).requires_grad_();
  }
  test::TestRanks world = test::test_ranks();
  std::unique_ptr<Communicator> forward, back;
};

class SequenceParallelAttention : public SpTest, public ::testing::WithParamInterface<Case> {};
using SequenceParallelVolume = SpTest;

torch::Tensor attend(const std::string& algorithm, const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                     const SequenceLayout& layout, double scale, Communicator& forward, Communicator& back) {
  if (algorithm == "ring") return ring_attention(q, k, v, layout, scale, forward);
  if (algorithm == "token_ring") return token_ring_attention(q, k, v, layout, scale, forward, back);
  return halo_attention(q, k, v, layout, scale, forward);
}

// A dtype the cases run in, and how close each result must come to float64 attention of the whole
// sequence on the same (rounded) inputs: relative error at most `tolerance`, measured against a scale
// of at least `floor`. With a window of one token dq and dk are zero up to rounding, which differs
// with the blocks' shapes, so the floor is 1e-3 in float64 and the inputs' scale (standard normal) in
// bf16. bf16 runs where the fused kernels do, on the GPU.
struct Precision {
  torch::ScalarType dtype;
  double tolerance, floor;
};

std::vector<Precision> precisions(const torch::Device& device) {
  std::vector<Precision> p = {{torch::kFloat64, 1e-10, 1e-3}};
  if (device.is_cuda()) p.push_back({torch::kBFloat16, 3e-2, 1.0});
  return p;
}

// Large enough for the GPU's fused kernels.
constexpr int64_t kCaseHeadDim = 64;

TEST_P(SequenceParallelAttention, ForwardAndGradientsMatchTheWholeSequence) {
  const Case& c = GetParam();
  const Sequence s = make_sequence(c, kCaseHeadDim);
  const double scale = 1.0 / std::sqrt(static_cast<double>(kCaseHeadDim));
  AttentionMask mask = AttentionMask::self(s.pos, s.doc, c.causal);
  mask.window = c.window;
  const int rank = world.rank;
  SequenceLayout layout = make_sequence_layout(s.pos, s.doc, world.size, c.causal);
  layout.window = c.window;
  std::vector<std::string> algorithms = {"ring", "token_ring"};
  if (c.window > 0) algorithms.push_back("halo");
  for (const Precision& p : precisions(world.device)) {
    // A copy even in float64: the reference's leaves must not be the sequence's own tensors.
    const auto rounded = [&](const torch::Tensor& t) { return t.to(p.dtype).to(torch::kFloat64).clone(); };
    auto q = rounded(s.q).requires_grad_(), k = rounded(s.k).requires_grad_(), v = rounded(s.v).requires_grad_();
    const auto reference = local_attention(q, k, v, mask, scale);
    reference.backward(rounded(s.dout));
    for (const auto& algorithm : algorithms) {
      const std::string what = algorithm + " in " + c10::toString(p.dtype) + ", rank " + std::to_string(rank) + ": ";
      auto ql = shard(layout, s.q.to(p.dtype), rank), kl = shard(layout, s.k.to(p.dtype), rank),
           vl = shard(layout, s.v.to(p.dtype), rank);
      const auto out = attend(algorithm, ql, kl, vl, layout, scale, *forward, *back);
      out.backward(world.on_device(layout.take(s.dout.to(p.dtype), 1, rank)));
      const auto error = [&](const torch::Tensor& got, const torch::Tensor& want) {
        return relative_error(got, layout.take(want, 1, rank), p.floor);
      };
      EXPECT_LE(error(out, reference), p.tolerance) << what << "out";
      EXPECT_LE(error(ql.grad(), q.grad()), p.tolerance) << what << "dq";
      EXPECT_LE(error(kl.grad(), k.grad()), p.tolerance) << what << "dk";
      EXPECT_LE(error(vl.grad(), v.grad()), p.tolerance) << what << "dv";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, SequenceParallelAttention,
    ::testing::Values(Case{"causal_mha_one_document", true, 4, 4, {96}},
                      Case{"causal_gqa_packed", true, 4, 2, {17, 40, 9, 30}},       // 96 tokens, boundaries inside chunks
                      Case{"causal_gqa_odd_length", true, 4, 1, {23, 36, 18}},      // 77: padded to a multiple of 2N
                      Case{"noncausal_mha_packed", false, 2, 2, {50, 13, 33}},
                      Case{"noncausal_gqa_odd_length", false, 4, 2, {41, 30}},
                      // Windows within a chunk (12 to 24 tokens at 4 to 2 ranks), past it, past a
                      // whole shard, of one token; packed and padded.
                      Case{"window_inside_a_chunk", true, 4, 4, {96}, 5},
                      Case{"window_past_a_chunk", true, 4, 2, {96}, 30},
                      Case{"window_past_a_shard_odd_length", true, 4, 1, {23, 36, 18}, 70},
                      Case{"window_packed", true, 4, 2, {17, 40, 9, 30}, 7},
                      Case{"window_of_one_token", true, 2, 2, {50}, 1}),
    [](const auto& info) { return std::string(info.param.name); });

// Non-causal MHA over one document whose length divides by N: every block is visible, so the
// per-step volumes of docs/sequence-parallelism.md hold exactly: ring sends 2·n·G·d·b per step in one direction; TokenRing
// n·H·d·b (Q) one way and n·H·(d + 1)·b (out and lse) the other, over N - 1 steps each; and the
// backward volumes derived there (with D = rowsum(dO∘O) travelling instead of O).
TEST_F(SequenceParallelVolume, BytesPerDirectionMatchTheFormulas) {
  const int64_t ranks = world.size, n = 16, heads = 2, b = 8;
  const Case c{"volume", false, heads, heads, {ranks * n}};
  const Sequence s = make_sequence(c);
  const SequenceLayout layout = make_sequence_layout(s.pos, s.doc, ranks, false);
  const int rank = world.rank;
  const auto ql = world.on_device(layout.take(s.q, 1, rank)), kl = world.on_device(layout.take(s.k, 1, rank)),
             vl = world.on_device(layout.take(s.v, 1, rank));
  const int next = static_cast<int>((rank + 1) % ranks), previous = static_cast<int>((rank + ranks - 1) % ranks);

  forward->counters().reset();
  ring_attention(ql, kl, vl, layout, 0.3, *forward);
  EXPECT_EQ(forward->counters().by_kind["p2p"][next].sent, (ranks - 1) * 2 * n * heads * kHeadDim * b);

  forward->counters().reset();
  back->counters().reset();
  token_ring_attention(ql, kl, vl, layout, 0.3, *forward, *back);
  EXPECT_EQ(forward->counters().by_kind["p2p"][previous].sent, (ranks - 1) * n * heads * kHeadDim * b);
  EXPECT_EQ(back->counters().of_kind("p2p").sent, (ranks - 1) * n * heads * (kHeadDim + 1) * b);

  // Backward. ring: K/V on N - 1 steps and their gradients on the same N - 1 (the owner keeps its
  // own block's part; the last visitor sends the rest home).
  // token_ring: Q and dO with D and lse (2d + 2 values per row) one way, dQ partials the other.
  const auto dout = world.on_device(layout.take(s.dout, 1, rank));
  auto grad_of = [&](auto attend) {
    auto q = ql.clone().requires_grad_(), k = kl.clone().requires_grad_(), v = vl.clone().requires_grad_();
    attend(q, k, v).backward(dout);
  };
  forward->counters().reset();
  grad_of([&](auto& q, auto& k, auto& v) { return ring_attention(q, k, v, layout, 0.3, *forward); });
  const int64_t kv_shard = 2 * n * heads * kHeadDim * b;
  EXPECT_EQ(forward->counters().by_kind["p2p"][next].sent, (ranks - 1) * kv_shard + (ranks - 1) * kv_shard + (ranks - 1) * kv_shard);
  forward->counters().reset();
  back->counters().reset();
  grad_of([&](auto& q, auto& k, auto& v) { return token_ring_attention(q, k, v, layout, 0.3, *forward, *back); });
  EXPECT_EQ(forward->counters().by_kind["p2p"][previous].sent,
            (ranks - 1) * n * heads * kHeadDim * b + (ranks - 1) * n * heads * (2 * kHeadDim + 2) * b);
  EXPECT_EQ(back->counters().of_kind("p2p").sent,
            (ranks - 1) * n * heads * (kHeadDim + 1) * b + (ranks - 1) * n * heads * kHeadDim * b);
}

// Shards travel only as far as they are seen. Causal, zigzag, documents of one chunk each except
// the first, which covers chunks 0 and 1: only rank 1's queries (chunk 1) see another rank's keys
// (rank 0's chunk 0). token_ring: rank 1's queries go one hop to rank 0, and only chunk 1's rows
// (forward Q; backward Q, dO, D, lse). ring: rank 0's K/V go one hop to
// rank 1, and in the backward rank 1 returns their dK/dV straight home. Everyone else sends
// nothing, and the results still equal the whole sequence.
TEST_F(SequenceParallelVolume, ShardsTravelOnlyAsFarAsTheyAreSeen) {
  const int64_t ranks = world.size, chunk = 6, heads = 2, b = 8;
  std::vector<int64_t> documents(2 * ranks - 1, chunk);
  documents[0] = 2 * chunk;
  const Case c{"chunk documents", true, heads, heads, documents};
  const Sequence s = make_sequence(c);
  const SequenceLayout layout = make_sequence_layout(s.pos, s.doc, ranks, true);
  const int rank = world.rank;
  auto qr = s.q.clone().requires_grad_(), kr = s.k.clone().requires_grad_(), vr = s.v.clone().requires_grad_();
  const auto reference = local_attention(qr, kr, vr, AttentionMask::self(s.pos, s.doc, true), 0.3);
  reference.backward(s.dout);

  const int64_t shard_bytes = 2 * chunk * heads * kHeadDim * b;  // one of q, k, v, dO
  const int64_t row_values = 2 * chunk * heads * b;        // one of D, lse
  struct Expected {
    std::string algorithm;
    int64_t forward_bytes, backward_bytes;
  };
  const bool q_passes = rank == 1;
  const std::vector<Expected> expected = {
      {"token_ring", q_passes ? shard_bytes / 2 : 0, q_passes ? (2 * shard_bytes + 2 * row_values) / 2 : 0},
      {"ring", rank == 0 ? 2 * shard_bytes : 0, rank <= 1 ? 2 * shard_bytes : 0}};
  for (const auto& e : expected) {
    auto q = shard(layout, s.q, rank), k = shard(layout, s.k, rank),
         v = shard(layout, s.v, rank);
    forward->counters().reset();
    const auto out = attend(e.algorithm, q, k, v, layout, 0.3, *forward, *back);
    EXPECT_EQ(forward->counters().of_kind("p2p").sent, e.forward_bytes) << e.algorithm << " forward, rank " << rank;
    forward->counters().reset();
    out.backward(world.on_device(layout.take(s.dout, 1, rank)));
    EXPECT_EQ(forward->counters().of_kind("p2p").sent, e.backward_bytes) << e.algorithm << " backward, rank " << rank;
    EXPECT_LT(relative_error(out, layout.take(reference, 1, rank)), 1e-10) << e.algorithm;
    EXPECT_LT(relative_error(q.grad(), layout.take(qr.grad(), 1, rank)), 1e-10) << e.algorithm;
    EXPECT_LT(relative_error(k.grad(), layout.take(kr.grad(), 1, rank)), 1e-10) << e.algorithm;
    EXPECT_LT(relative_error(v.grad(), layout.take(vr.grad(), 1, rank)), 1e-10) << e.algorithm;
  }
}

// token_ring under causal zigzag moves only the rows that are seen (docs/sequence-parallelism.md). One document,
// chunk c: rank r's queries are chunks r and 2N - 1 - r. They travel to r - 1, r - 2, ...: earlier
// ranks' keys all rows see, and once wrapped round to later ranks only the second chunk does. So
// rank r passes on at step s the shard of rank r + s whole (2c rows) if it has not wrapped and is
// not rank 0's (which never meets an earlier rank), else its second chunk (c rows); and it returns
// the partial of 2c rows if r + s < N, of c rows if wrapped. For N = 4 (in chunks): Q sent 3, 6, 5,
// 4 and partials 6, 5, 4, 3 by ranks 0 .. 3.
TEST_F(SequenceParallelVolume, ZigzagMovesOnlyTheRowsThatAreSeen) {
  const int64_t ranks = world.size, chunk = 8, heads = 2, b = 8;
  const Case c{"zigzag returns", true, heads, heads, {2 * ranks * chunk}};
  const Sequence s = make_sequence(c);
  const SequenceLayout layout = make_sequence_layout(s.pos, s.doc, ranks, true);
  const int64_t rank = world.rank;
  auto q = shard(layout, s.q, rank), k = shard(layout, s.k, rank),
       v = shard(layout, s.v, rank);
  int64_t passed = 0, returned = 0;
  for (int64_t step = 0; step + 1 < ranks; ++step) passed += rank > 0 && rank + step < ranks ? 2 * chunk : chunk;
  for (int64_t step = 1; step < ranks; ++step) returned += rank + step < ranks ? 2 * chunk : chunk;
  const int previous = static_cast<int>((rank + ranks - 1) % ranks);

  forward->counters().reset();
  back->counters().reset();
  const auto out = token_ring_attention(q, k, v, layout, 0.3, *forward, *back);
  EXPECT_EQ(forward->counters().by_kind["p2p"][previous].sent, passed * heads * kHeadDim * b);
  EXPECT_EQ(back->counters().of_kind("p2p").sent, returned * heads * (kHeadDim + 1) * b);
  forward->counters().reset();
  back->counters().reset();
  out.backward(world.on_device(layout.take(s.dout, 1, rank)));
  EXPECT_EQ(forward->counters().by_kind["p2p"][previous].sent, passed * heads * (2 * kHeadDim + 2) * b);
  EXPECT_EQ(back->counters().of_kind("p2p").sent, returned * heads * kHeadDim * b);
}

// Halo attention over one document with a window of W <= chunk tokens: rank r sends the last W - 1
// rows of K/V of chunk r to rank r + 1 (its chunk r + 1) unless r + 1 = N (chunk N is rank N - 1's
// own), and of chunk 2N - 1 - r to rank r - 1 (its chunk 2N - r) unless r = 0; the backward gathers
// the same rows again and returns as many rows of dK/dV.
TEST_F(SequenceParallelVolume, HaloBytesFollowTheWindow) {
  const int64_t ranks = world.size, chunk = 8, window = 5, heads = 2, b = 8;
  const Case c{"halo volume", true, heads, heads, {2 * ranks * chunk}, window};
  const Sequence s = make_sequence(c);
  SequenceLayout layout = make_sequence_layout(s.pos, s.doc, ranks, true);
  layout.window = window;
  const int rank = world.rank;
  auto q = shard(layout, s.q, rank), k = shard(layout, s.k, rank),
       v = shard(layout, s.v, rank);
  const int64_t neighbours = (rank + 1 < ranks ? 1 : 0) + (rank > 0 ? 1 : 0);
  const int64_t halo = neighbours * (window - 1) * 2 * heads * kHeadDim * b;

  forward->counters().reset();
  const auto out = halo_attention(q, k, v, layout, 0.3, *forward);
  EXPECT_EQ(forward->counters().of_kind("p2p").sent, halo);
  forward->counters().reset();
  out.backward(world.on_device(layout.take(s.dout, 1, rank)));
  EXPECT_EQ(forward->counters().of_kind("p2p").sent, 2 * halo);

  // Ring moves whole shards, each as far as it is seen: rank r > 0's keys are seen by rank r - 1,
  // N - 1 hops on, but rank 0's only by rank 1, so ranks 1 .. N - 2 do not pass rank 0's shard on.
  forward->counters().reset();
  ring_attention(q, k, v, layout, 0.3, *forward);
  const int64_t passes = rank == 0 || rank == ranks - 1 ? ranks - 1 : ranks - 2;
  EXPECT_EQ(forward->counters().of_kind("p2p").sent, passes * 2 * (2 * chunk) * heads * kHeadDim * b);
}

}  // namespace
}  // namespace loom
