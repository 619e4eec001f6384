// The bucketed gradient reduction gives every rank the sum over ranks of the step's gradients,
// accumulated micro-batches included, whatever the bucket size, and starts every bucket's
// all_reduce from the gradient hooks while the backward runs.
#include <gtest/gtest.h>

#include "parallel/comm/mpi_communicator.h"
#include "parallel/data/gradient_reducer.h"

namespace loom {
namespace {

struct Net {
  torch::Tensor w1, b1, w2;
  Net() {
    torch::manual_seed(7);
    w1 = torch::randn({6, 5}, torch::kFloat64).requires_grad_();
    b1 = torch::randn({6}, torch::kFloat64).requires_grad_();
    w2 = torch::randn({3, 6}, torch::kFloat64).requires_grad_();
  }
  std::vector<torch::Tensor> params() const { return {w1, b1, w2}; }
  torch::Tensor loss(int rank, int micro) const {
    torch::manual_seed(100 * rank + micro);
    auto x = torch::randn({4, 5}, torch::kFloat64);
    return torch::tanh(torch::nn::functional::linear(x, w1, b1)).matmul(w2.t()).pow(2).sum();
  }
};

TEST(GradientReducer, SumsGradientsOverRanksAndMicroBatches) {
  auto world = mpi_world(60);
  const int rank = world->rank(), size = world->size();
  Net reference;
  for (int r = 0; r < size; ++r)
    for (int m = 0; m < 2; ++m) reference.loss(r, m).backward();
  for (int64_t bucket_bytes : {8, 200, 1 << 20}) {  // one bucket per tensor, mixed, one bucket
    Net net;
    GradientReducer reducer(net.params(), *world, bucket_bytes);
    net.loss(rank, 0).backward();
    reducer.arm();
    net.loss(rank, 1).backward();
    EXPECT_EQ(reducer.buckets_started(), reducer.num_buckets()) << "every bucket starts inside the backward, not after it";
    reducer.finish();
    for (size_t i = 0; i < net.params().size(); ++i) {
      EXPECT_TRUE(torch::allclose(net.params()[i].grad(), reference.params()[i].grad(), 1e-12, 1e-12))
          << "parameter " << i << ", bucket bytes " << bucket_bytes << ", " << reducer.num_buckets() << " buckets";
    }
  }
}

// With bfloat16 parameters the sums are taken in float32 and land in the float32 master weights'
// gradients: the sum of every rank's bfloat16 gradients to float32 precision, which a sum in
// bfloat16 would round away.
TEST(GradientReducer, SumsBfloat16GradientsInFloat32IntoTheMasters) {
  auto world = mpi_world(60);
  const int rank = world->rank(), size = world->size();
  const auto grad_of = [](int r) {
    torch::manual_seed(50 + r);
    return torch::randn({256}).to(torch::kBFloat16);
  };
  auto p = torch::zeros({256}, torch::kBFloat16).requires_grad_();
  auto master = torch::zeros({256}, torch::kFloat32);
  GradientReducer reducer({p}, {master}, torch::kFloat32, *world, 1 << 20);
  reducer.arm();
  (p * grad_of(rank)).sum().backward();
  reducer.finish();
  auto expected = torch::zeros({256}, torch::kFloat64);
  for (int r = 0; r < size; ++r) expected += grad_of(r).to(torch::kFloat64);
  ASSERT_TRUE(master.grad().defined());
  EXPECT_EQ(master.grad().scalar_type(), torch::kFloat32);
  EXPECT_TRUE(torch::allclose(master.grad().to(torch::kFloat64), expected, 1e-6, 1e-6));
  EXPECT_FALSE(torch::allclose(expected.to(torch::kBFloat16).to(torch::kFloat64), expected, 1e-6, 1e-6))
      << "the sums need more than bfloat16's precision, or the test shows nothing";
}

}  // namespace
}  // namespace loom
