// ZeRO's sharded AdamW steps every rank's parameters exactly as one AdamW steps them with the
// gradient summed over the ranks, whatever the stage and the bucket size, each rank holding only
// its part of the state; the pieces the ranks write of their masters and state are AdamW's and
// cover every tensor, and loading whole tensors back gives the same parts.
#include <gtest/gtest.h>

#include <map>

#include "parallel/comm/mpi_communicator.h"
#include "parallel/data/zero_optimizer.h"

namespace loom {
namespace {

struct Net {
  torch::Tensor w1, b1, w2;
  explicit Net(int seed = 7) {
    torch::manual_seed(seed);
    w1 = torch::randn({6, 5}, torch::kFloat64).requires_grad_();
    b1 = torch::randn({6}, torch::kFloat64).requires_grad_();
    w2 = torch::randn({3, 6}, torch::kFloat64).requires_grad_();
  }
  NamedTensors named() const { return {{"w1", w1}, {"b1", b1}, {"w2", w2}}; }
  torch::Tensor loss(int rank, int step) const {
    torch::manual_seed(100 * rank + step);
    auto x = torch::randn({4, 5}, torch::kFloat64).to(w1.scalar_type());
    return torch::tanh(torch::nn::functional::linear(x, w1, b1)).matmul(w2.t()).pow(2).sum();
  }
  void zero_grads() {
    for (auto* p : {&w1, &b1, &w2}) p->mutable_grad() = torch::Tensor();
  }
};

const AdamWOptions kOptions{0.9, 0.95, 1e-8, 0.1};
constexpr int kSteps = 3;

void expect_same(const NamedTensors& got, const NamedTensors& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].first, want[i].first) << what;
    EXPECT_TRUE(torch::allclose(got[i].second.to(torch::kFloat64), want[i].second.to(torch::kFloat64), 1e-12, 1e-12))
        << what << ": " << got[i].first;
  }
}

// Each piece equals the same range of the whole tensor of that name, and the ranks' pieces add up to
// every element of every tensor.
void expect_pieces(const TensorPieces& got, const NamedTensors& want, Communicator& world, const std::string& what) {
  std::map<std::string, torch::Tensor> by_name(want.begin(), want.end());
  auto counts = torch::zeros({static_cast<int64_t>(want.size())}, torch::kInt64);
  for (const TensorPiece& p : got) {
    ASSERT_TRUE(by_name.count(p.name)) << what << ": " << p.name;
    const torch::Tensor& whole = by_name.at(p.name);
    EXPECT_EQ(p.shape, whole.sizes().vec()) << what << ": " << p.name;
    const auto range = whole.reshape(-1).narrow(0, p.begin, p.values.numel());
    EXPECT_TRUE(torch::allclose(p.values.to(torch::kFloat64), range.to(torch::kFloat64), 1e-12, 1e-12)) << what << ": " << p.name;
    for (size_t i = 0; i < want.size(); ++i)
      if (want[i].first == p.name) counts[static_cast<int64_t>(i)] += p.values.numel();
  }
  world.all_reduce(counts, ReduceOp::kSum).wait();
  for (size_t i = 0; i < want.size(); ++i)
    EXPECT_EQ(counts[static_cast<int64_t>(i)].item<int64_t>(), want[i].second.numel()) << what << ": " << want[i].first;
}

TEST(ZeroOptimizer, StepsEveryRankLikeAdamWOnTheSummedGradient) {
  auto world = mpi_world(60);
  const int rank = world->rank(), size = world->size();
  Net reference;
  AdamW adamw(reference.named(), kOptions);
  std::vector<double> reference_norms;
  for (int step = 0; step < kSteps; ++step) {
    reference.zero_grads();
    for (int r = 0; r < size; ++r) reference.loss(r, step).backward();
    double squares = 0;
    for (const auto& [name, p] : reference.named()) squares += p.grad().pow(2).sum().item<double>();
    reference_norms.push_back(squares);
    adamw.step(1e-2);
  }
  for (const int stage : {1, 2})
    for (const int64_t bucket_bytes : {8, 200, 1 << 20}) {  // one bucket per tensor, mixed, one bucket
      const std::string where = "stage " + std::to_string(stage) + ", bucket bytes " + std::to_string(bucket_bytes);
      Net net;
      ZeroOptimizer zero(net.named(), stage, kOptions, torch::kFloat64, torch::kFloat64, *world, bucket_bytes);
      for (int step = 0; step < kSteps; ++step) {
        net.zero_grads();
        zero.reducer().arm();
        net.loss(rank, step).backward();
        zero.reducer().finish();
        auto squares = torch::tensor({zero.grad_norm_squared()}, torch::kFloat64);
        world->all_reduce(squares, ReduceOp::kSum).wait();
        EXPECT_NEAR(squares.item<double>(), reference_norms[step], 1e-10 * reference_norms[step]) << where;
        zero.step(1e-2);
      }
      expect_same(net.named(), reference.named(), where + ", parameters");
      expect_pieces(zero.master_pieces(), reference.named(), *world, where + ", masters");
      expect_pieces(zero.state_pieces(), adamw.state(), *world, where + ", state");
      // This rank's part: the two moments of each bucket's padded share (the float64 parameters are
      // their own masters).
      int64_t elements = 0;
      for (int64_t b = 0; b < zero.reducer().num_buckets(); ++b) elements += zero.reducer().padded(b) / size;
      EXPECT_EQ(zero.state_bytes(), 2 * 8 * elements) << where;

      Net other(11);
      ZeroOptimizer loaded(other.named(), stage, kOptions, torch::kFloat64, torch::kFloat64, *world, bucket_bytes);
      loaded.load(reference.named(), adamw.state());
      expect_same(other.named(), reference.named(), where + ", parameters after load");
      expect_pieces(loaded.state_pieces(), adamw.state(), *world, where + ", state after load");
    }
}

// Masters wider than the parameters are kept apart, a part per rank: float32 parameters are the
// float64 masters rounded, and the masters' pieces are written at float64.
TEST(ZeroOptimizer, KeepsWiderMastersApartAndRoundsTheParametersFromThem) {
  auto world = mpi_world(60);
  Net net;
  std::vector<torch::Tensor> wide;
  for (auto* p : {&net.w1, &net.b1, &net.w2}) {
    wide.push_back(p->detach().clone());
    *p = p->detach().to(torch::kFloat32).requires_grad_();
  }
  ZeroOptimizer zero(net.named(), 2, kOptions, torch::kFloat64, torch::kFloat32, *world, 200);
  const NamedTensors whole = {{"w1", wide[0]}, {"b1", wide[1]}, {"w2", wide[2]}};
  zero.load(whole, {});
  zero.reducer().arm();
  net.loss(world->rank(), 0).backward();
  zero.reducer().finish();
  zero.step(1e-2);
  const std::map<std::string, torch::Tensor> params = {{"w1", net.w1}, {"b1", net.b1}, {"w2", net.w2}},
                                             before(whole.begin(), whole.end());
  for (const TensorPiece& p : zero.master_pieces()) {
    EXPECT_EQ(p.values.scalar_type(), torch::kFloat64);
    const int64_t n = p.values.numel();
    EXPECT_TRUE(torch::equal(params.at(p.name).detach().reshape(-1).narrow(0, p.begin, n), p.values.to(torch::kFloat32))) << p.name;
    EXPECT_FALSE(torch::equal(p.values, before.at(p.name).reshape(-1).narrow(0, p.begin, n))) << "the step moved " << p.name;
  }
  int64_t elements = 0;
  for (int64_t b = 0; b < zero.reducer().num_buckets(); ++b) elements += zero.reducer().padded(b) / world->size();
  EXPECT_EQ(zero.state_bytes(), 3 * 8 * elements) << "float64 masters and moments of this rank's share";
}

// Stage 2's reduce-scatter leaves each rank only its part; stage 1's all-reduce leaves the whole sum
// in the bucket, of which the part is a view. Both parts hold the same sums.
TEST(ZeroOptimizer, StageTwoReducesOnlyThisRanksPart) {
  auto world = mpi_world(60);
  Net a, b;
  ZeroOptimizer one(a.named(), 1, kOptions, torch::kFloat64, torch::kFloat64, *world, 1 << 20);
  ZeroOptimizer two(b.named(), 2, kOptions, torch::kFloat64, torch::kFloat64, *world, 1 << 20);
  for (auto* z : {&one, &two}) z->reducer().arm();
  a.loss(world->rank(), 0).backward();
  b.loss(world->rank(), 0).backward();
  for (auto* z : {&one, &two}) z->reducer().finish();
  const torch::Tensor& part1 = one.reducer().part(0);
  const torch::Tensor& part2 = two.reducer().part(0);
  EXPECT_EQ(part2.numel(), one.reducer().padded(0) / world->size());
  EXPECT_TRUE(torch::equal(part1, part2));
  EXPECT_EQ(part2.storage().nbytes(), static_cast<size_t>(part2.numel() * 8)) << "stage 2's part is a tensor of its own";
}

// A chain of equal layers, one bucket each, so that stage 2's buckets come and go during the
// backward.
struct Chain {
  std::vector<torch::Tensor> weights;
  Chain() {
    torch::manual_seed(3);
    for (int i = 0; i < 8; ++i) weights.push_back((0.5 * torch::randn({4, 4}, torch::kFloat64)).requires_grad_());
  }
  NamedTensors named() const {
    NamedTensors out;
    for (size_t i = 0; i < weights.size(); ++i) out.push_back({"w" + std::to_string(i), weights[i]});
    return out;
  }
  torch::Tensor loss(int rank, int micro) const {
    torch::manual_seed(1000 + 10 * rank + micro);
    auto h = torch::randn({3, 4}, torch::kFloat64);
    for (const auto& w : weights) h = torch::tanh(h.matmul(w.t()));
    return h.pow(2).sum();
  }
  int64_t grads_held() const {
    int64_t n = 0;
    for (const auto& w : weights) n += w.grad().defined();
    return n;
  }
};

// Stage 2 armed before each of a step's backwards adds every micro-batch's reduced part into this
// rank's, so the step equals AdamW on the gradient summed over ranks and micro-batches, while no
// parameter's whole gradient outlives the next parameter's arrival and at most a few buckets'
// buffers exist at once.
TEST(ZeroOptimizer, StageTwoSumsEveryMicroBatchIntoItsPartWithoutWholeGradients) {
  auto world = mpi_world(60);
  const int rank = world->rank(), size = world->size();
  constexpr int kMicro = 3;
  Chain reference;
  AdamW adamw(reference.named(), kOptions);
  for (int step = 0; step < kSteps; ++step) {
    for (auto& w : reference.weights) w.mutable_grad() = torch::Tensor();
    for (int r = 0; r < size; ++r)
      for (int m = 0; m < kMicro; ++m) reference.loss(r, kMicro * step + m).backward();
    adamw.step(1e-2);
  }
  Chain net;
  ZeroOptimizer zero(net.named(), 2, kOptions, torch::kFloat64, torch::kFloat64, *world, 8);
  ASSERT_EQ(zero.reducer().num_buckets(), 8);
  ASSERT_TRUE(zero.reducer().reduces_every_backward());
  int64_t held_at_first_layer = -1;
  // Registered after the reducer's, so it runs once the reducer has seen w0's gradient.
  net.weights[0].register_hook([&](const torch::Tensor&) { held_at_first_layer = std::max(held_at_first_layer, net.grads_held()); });
  for (int step = 0; step < kSteps; ++step) {
    for (int m = 0; m < kMicro; ++m) {
      zero.reducer().arm();
      net.loss(rank, kMicro * step + m).backward();
    }
    zero.reducer().finish();
    EXPECT_EQ(net.grads_held(), 0) << "step " << step;
    zero.step(1e-2);
  }
  expect_same(net.named(), reference.named(), "stage 2 over micro-batches, parameters");
  expect_pieces(zero.state_pieces(), adamw.state(), *world, "stage 2 over micro-batches, state");
  EXPECT_EQ(held_at_first_layer, 0) << "whole gradients outlived the next parameter's hook";
  const int64_t padded = zero.reducer().padded(0), part = padded / size;
  EXPECT_EQ(zero.reducer().held_bytes(), 8 * 8 * part);
  EXPECT_GT(zero.reducer().peak_transient_bytes(), 0);
  EXPECT_LE(zero.reducer().peak_transient_bytes(), static_cast<int64_t>(GradientReducer::kInFlight + 1) * (padded + part) * 8);
}

}  // namespace
}  // namespace loom
