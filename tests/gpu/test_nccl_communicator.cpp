// The NCCL backend on the GPUs of one machine (label `gpu`): every operation against the local
// reference, as in the MPI tests. Started under mpirun with one rank per GPU, or with ranks sharing
// GPUs as tests/gpu/test_ranks_nccl.cpp describes; skips without a CUDA LibTorch and a device.
#include <gtest/gtest.h>

#include "tests/mpi/test_ranks.h"

namespace loom {
namespace {

class Nccl : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!world.skip.empty()) GTEST_SKIP() << world.skip;
    rank = world.rank;
    size = world.size;
    comm = world.group("world");
  }
  torch::Tensor input_of(int r, std::vector<int64_t> shape) const {
    torch::manual_seed(1000 + r);
    return world.on_device(torch::randn(shape, torch::kFloat64));
  }
  test::TestRanks world = test::test_ranks();
  std::unique_ptr<Communicator> comm;
  int rank = 0, size = 1;
};

TEST_F(Nccl, AllReduceAllGatherReduceScatterBroadcast) {
  auto sum = input_of(rank, {9, 4});
  comm->all_reduce(sum, ReduceOp::kSum).wait();
  auto expected = input_of(0, {9, 4});
  for (int r = 1; r < size; ++r) expected += input_of(r, {9, 4});
  EXPECT_TRUE(torch::allclose(sum, expected, 1e-12, 1e-12));

  auto gathered = torch::empty({size * 9, 4}, sum.options());
  comm->all_gather(input_of(rank, {9, 4}), gathered).wait();
  for (int r = 0; r < size; ++r) EXPECT_TRUE(torch::equal(gathered.narrow(0, r * 9, 9), input_of(r, {9, 4})));

  auto part = torch::empty({2, 4}, sum.options());
  comm->reduce_scatter(input_of(rank, {size * 2, 4}), part, ReduceOp::kSum).wait();
  auto total = input_of(0, {size * 2, 4});
  for (int r = 1; r < size; ++r) total += input_of(r, {size * 2, 4});
  EXPECT_TRUE(torch::allclose(part, total.narrow(0, rank * 2, 2), 1e-12, 1e-12));

  auto b = input_of(rank, {5});
  comm->broadcast(b, 0).wait();
  EXPECT_TRUE(torch::equal(b, input_of(0, {5})));
  comm->barrier().wait();
}

TEST_F(Nccl, RingExchangeOnTwoChannels) {
  const int next = (rank + 1) % size, prev = (rank + size - 1) % size;
  auto from_prev = torch::empty({64}, torch::TensorOptions().dtype(torch::kFloat64).device(world.device));
  auto from_next = torch::empty_like(from_prev);
  auto forward = comm->exchange({send_to(next, input_of(rank, {64})), recv_from(prev, from_prev)}, 0);
  auto backward = comm->exchange({send_to(prev, input_of(rank + 50, {64})), recv_from(next, from_next)}, 1);
  forward.wait();
  backward.wait();
  EXPECT_TRUE(torch::equal(from_prev, input_of(prev, {64})));
  EXPECT_TRUE(torch::equal(from_next, input_of(next + 50, {64})));
}

}  // namespace
}  // namespace loom
