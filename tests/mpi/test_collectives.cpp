// Every collective of the MPI communicator against a reference computed locally from what each
// rank contributed (every rank can regenerate every other rank's input from its rank number).
#include <gtest/gtest.h>

#include <numeric>

#include "parallel/comm/mpi_communicator.h"
#include "runtime/core/error.h"

namespace loom {
namespace {

torch::Tensor input_of(int rank, std::vector<int64_t> shape, torch::ScalarType dtype = torch::kFloat64) {
  torch::manual_seed(1000 + rank);
  return torch::randn(shape, torch::kFloat64).mul(10).to(dtype);
}

class Collectives : public ::testing::Test {
 protected:
  std::unique_ptr<Communicator> world = mpi_world(60);
  int rank = world->rank(), size = world->size();
};

TEST_F(Collectives, AllReduceSumAvgMaxMatchTheLocalReference) {
  for (auto op : {ReduceOp::kSum, ReduceOp::kAvg, ReduceOp::kMax}) {
    auto mine = input_of(rank, {7, 5});
    world->all_reduce(mine, op).wait();
    auto expected = input_of(0, {7, 5});
    for (int r = 1; r < size; ++r) expected = op == ReduceOp::kMax ? torch::maximum(expected, input_of(r, {7, 5})) : expected + input_of(r, {7, 5});
    if (op == ReduceOp::kAvg) expected /= size;
    EXPECT_TRUE(torch::allclose(mine, expected, 1e-13, 1e-13)) << "op " << static_cast<int>(op);
  }
  auto ints = torch::full({3}, rank + 1, torch::kInt64);
  all_reduce_now(*world, ints);
  EXPECT_EQ(ints[0].item<int64_t>(), size * (size + 1) / 2);
}

TEST_F(Collectives, AllReduceWritesIntoANonContiguousView) {
  auto base = input_of(rank, {6, 4});
  auto view = base.t();  // non-contiguous
  ASSERT_FALSE(view.is_contiguous());
  world->all_reduce(view, ReduceOp::kSum).wait();
  auto expected = input_of(0, {6, 4});
  for (int r = 1; r < size; ++r) expected += input_of(r, {6, 4});
  EXPECT_TRUE(torch::allclose(base, expected, 1e-13, 1e-13));
}

TEST_F(Collectives, ReduceScatterGivesEachRankItsReducedPart) {
  auto mine = input_of(rank, {size * 3, 2});
  auto out = torch::empty({3, 2}, torch::kFloat64);
  world->reduce_scatter(mine, out, ReduceOp::kSum).wait();
  auto total = input_of(0, {size * 3, 2});
  for (int r = 1; r < size; ++r) total += input_of(r, {size * 3, 2});
  EXPECT_TRUE(torch::allclose(out, total.narrow(0, rank * 3, 3), 1e-13, 1e-13));
}

TEST_F(Collectives, AllGatherOfNonContiguousInputIntoNonContiguousOutput) {
  auto mine = input_of(rank, {3, 4}).t();  // [4, 3] non-contiguous
  auto storage = torch::zeros({3, size * 4}, torch::kFloat64);
  auto out = storage.t();  // [size*4, 3] non-contiguous
  world->all_gather(mine, out).wait();
  for (int r = 0; r < size; ++r) EXPECT_TRUE(torch::equal(out.narrow(0, r * 4, 4), input_of(r, {3, 4}).t())) << "part " << r;
}

// Rank s sends (s + d) % 3 rows to rank d: uneven splits, zeros included. Row values name (s, d, i).
int64_t rows_between(int s, int d) { return (s + d) % 3; }
torch::Tensor rows_from(int s, int d) {
  auto rows = torch::empty({rows_between(s, d), 2}, torch::kFloat64);
  for (int64_t i = 0; i < rows.size(0); ++i) {
    rows[i][0] = s * 100 + d;
    rows[i][1] = static_cast<double>(i);
  }
  return rows;
}

TEST_F(Collectives, AllToAllWithUnevenAndZeroSplits) {
  std::vector<int64_t> send(size), recv(size);
  std::vector<torch::Tensor> parts, expected;
  for (int p = 0; p < size; ++p) {
    send[p] = rows_between(rank, p);
    recv[p] = rows_between(p, rank);
    parts.push_back(rows_from(rank, p));
    expected.push_back(rows_from(p, rank));
  }
  auto input = torch::cat(parts).t().contiguous().t();  // same values, non-contiguous layout
  const int64_t incoming = std::accumulate(recv.begin(), recv.end(), int64_t{0});
  auto out = torch::full({incoming, 2}, -1.0, torch::kFloat64);
  world->all_to_all(input, send, out, recv).wait();
  EXPECT_TRUE(torch::equal(out, torch::cat(expected)));
  for (int p = 0; p < size; ++p) {
    if (p == rank) continue;
    const auto bytes = world->counters().by_kind["all_to_all"][p];
    EXPECT_EQ(bytes.sent, send[p] * 2 * 8) << "to " << p;
    EXPECT_EQ(bytes.received, recv[p] * 2 * 8) << "from " << p;
  }
}

TEST_F(Collectives, BroadcastFromEveryRoot) {
  for (int root = 0; root < size; ++root) {
    auto t = input_of(rank, {5});
    world->broadcast(t, root).wait();
    EXPECT_TRUE(torch::equal(t, input_of(root, {5}))) << "root " << root;
  }
  barrier_now(*world);
}

// Every rank sends to both neighbours and receives from both at once, in one batched exchange per
// channel, two channels in flight together: the pattern of a bidirectional ring.
TEST_F(Collectives, BidirectionalRingOfBatchedSendsAndReceives) {
  const int next = (rank + 1) % size, prev = (rank + size - 1) % size;
  auto to_next = input_of(rank, {64, 3}), to_prev = input_of(rank + 50, {64, 3});
  auto strided_send = input_of(rank + 80, {64, 6}).narrow(1, 0, 3);
  auto from_prev = torch::empty_like(to_next), from_next = torch::empty_like(to_prev);
  auto strided_recv = torch::empty({3, 64}, torch::kFloat64).t();
  world->counters().reset();
  auto forward = world->exchange({send_to(next, to_next), recv_from(prev, from_prev)}, 0);
  auto backward = world->exchange({recv_from(next, from_next), send_to(prev, to_prev), send_to(next, strided_send),
                                   recv_from(prev, strided_recv)}, 1);
  backward.wait();
  forward.wait();
  EXPECT_TRUE(torch::equal(from_prev, input_of(prev, {64, 3})));
  EXPECT_TRUE(torch::equal(from_next, input_of(next + 50, {64, 3})));
  EXPECT_TRUE(torch::equal(strided_recv, input_of(prev + 80, {64, 6}).narrow(1, 0, 3)));
  const int64_t block = 64 * 3 * 8;
  const auto p2p = world->counters().of_kind("p2p");
  EXPECT_EQ(p2p.sent, 3 * block);
  EXPECT_EQ(p2p.received, 3 * block);
}

TEST_F(Collectives, SplitGroupsReduceOnlyAmongThemselves) {
  auto half = world->split(rank % 2, rank, "parity");
  auto t = torch::full({1}, static_cast<double>(rank), torch::kFloat64);
  all_reduce_now(*half, t);
  double expected = 0;
  for (int r = rank % 2; r < size; r += 2) expected += r;
  EXPECT_EQ(t.item<double>(), expected);
  EXPECT_EQ(half->size(), (size - rank % 2 + 1) / 2);
}

TEST_F(Collectives, OverdueOperationThrowsNamingRankAndOperation) {
  auto impatient = mpi_world(1)->split(0, rank, "impatient");
  auto slot = torch::zeros({4}, torch::kFloat64);
  if (rank == 0) {
    auto handle = impatient->exchange({recv_from(1, slot)});
    const std::string message = [&] {
      try {
        handle.wait();
      } catch (const Error& e) {
        return std::string(e.what());
      }
      return std::string("no error");
    }();
    EXPECT_NE(message.find("rank 0"), std::string::npos) << message;
    EXPECT_NE(message.find("exchange"), std::string::npos) << message;
    EXPECT_NE(message.find("did not finish within 1 s"), std::string::npos) << message;
  }
  barrier_now(*world);
  // Complete the receive so nothing is left pending.
  if (rank == 1) impatient->exchange({send_to(0, slot)}).wait();
  barrier_now(*world);
}

TEST_F(Collectives, WrongShapesAreClearErrors) {
  auto out = torch::empty({1}, torch::kFloat64);
  try {
    world->all_gather(torch::zeros({2}, torch::kFloat64), out);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("all_gather"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace loom
