// The benchmark stand-ins that split an algorithm's time into computation and communication
// (launch/bench/exchange_replay.h), on a ring of real ranks: each rank sends to the next and receives
// from the previous one.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "launch/bench/exchange_replay.h"
#include "parallel/comm/mpi_communicator.h"

namespace loom {
namespace {

class ExchangeStandIns : public ::testing::Test {
 protected:
  std::vector<P2POp> ring_ops(const torch::Tensor& out, const torch::Tensor& in) const {
    return {send_to((rank + 1) % size, out), recv_from(prev, in)};
  }
  static void sleep_s(double s) { std::this_thread::sleep_for(std::chrono::duration<double>(s)); }

  std::unique_ptr<Communicator> world = mpi_world(60);
  int rank = world->rank(), size = world->size();
  torch::Tensor mine = torch::full({64}, static_cast<double>(rank), torch::kFloat64);
  int prev = (rank + size - 1) % size;
};

TEST_F(ExchangeStandIns, WaitTimingForwardsAndCountsTheTimeBlockedOnALatePeer) {
  WaitTimingCommunicator timed(*world);
  auto in = torch::empty_like(mine);
  barrier_now(*world);
  if (rank == 0) sleep_s(0.4);  // rank 1's data is 0.4 s late
  timed.exchange(ring_ops(mine, in)).wait();
  EXPECT_EQ(in[0].item<double>(), prev) << "the exchange went through to the real communicator";
  if (rank == 1) EXPECT_GE(timed.waited_seconds(), 0.3);
  timed.reset();
  EXPECT_EQ(timed.waited_seconds(), 0.0);
}

TEST_F(ExchangeStandIns, WaitTimingCountsNothingBeforeTheWaitNorTwice) {
  WaitTimingCommunicator timed(*world);
  auto in = torch::empty_like(mine);
  barrier_now(*world);
  CommHandle h = timed.exchange(ring_ops(mine, in));
  sleep_s(0.5);  // the computation that hides the transfer
  h.wait();
  const double once = timed.waited_seconds();
  EXPECT_LT(once, 0.25) << "a transfer that finished during the sleep is hidden";
  h.wait();
  EXPECT_EQ(timed.waited_seconds(), once) << "a second wait() of the same exchange adds nothing";
  barrier_now(*world);
}

TEST_F(ExchangeStandIns, NullCompletesAtOnceWithZerosAndMovesNothing) {
  NullCommunicator null(*world);
  auto in = torch::full_like(mine, 7.0);
  null.exchange(ring_ops(mine, in)).wait();
  EXPECT_EQ(in.abs().sum().item<double>(), 0.0);
  EXPECT_EQ(world->counters().of_kind("p2p").sent, 0);
}

TEST_F(ExchangeStandIns, ReplayRunsTheRecordedExchangesAgainOnTheRealCommunicator) {
  RecordingCommunicator recording(*world);
  const auto out = torch::ones({2, 16}, torch::kFloat32);
  auto in = torch::empty_like(out);
  recording.exchange(ring_ops(out, in), 3).wait();
  ASSERT_EQ(recording.recorded().size(), 1u);
  const RecordedExchange& r = recording.recorded()[0];
  EXPECT_EQ(r.channel, 3);
  ASSERT_EQ(r.ops.size(), 2u);
  EXPECT_EQ(r.ops[1].shape, (std::vector<int64_t>{2, 16}));
  EXPECT_EQ(r.ops[1].dtype, torch::kFloat32);
  const int64_t sent_once = world->counters().of_kind("p2p").sent;
  EXPECT_EQ(sent_once, bytes_of(out)) << "the recording forwarded the exchange";
  ExchangeReplay replay({{world.get(), &recording.recorded()}});
  replay.run();
  replay.run();
  EXPECT_EQ(world->counters().of_kind("p2p").sent, 3 * sent_once);
}

// Tensor parallelism's boundaries: reduce-scatter and all-gather are recorded in order with their
// shapes, answered with zeros by the null stand-in, and replayed as the same collectives.
TEST_F(ExchangeStandIns, CollectivesAreRecordedNulledAndReplayedToo) {
  const auto rows = torch::ones({size * 3, 4}, torch::kFloat32);
  auto part = torch::full({3, 4}, 5.0f), whole = torch::full({size * 3, 4}, 5.0f);
  NullCommunicator null(*world);
  null.reduce_scatter(rows, part, ReduceOp::kSum).wait();
  null.all_gather(part, whole).wait();
  EXPECT_EQ(part.abs().sum().item<float>() + whole.abs().sum().item<float>(), 0.0f);

  RecordingCommunicator recording(*world);
  recording.reduce_scatter(rows, part, ReduceOp::kSum).wait();
  EXPECT_EQ(part[0][0].item<float>(), static_cast<float>(size)) << "forwarded to the real communicator";
  recording.all_gather(part, whole).wait();
  ASSERT_EQ(recording.recorded().size(), 2u);
  EXPECT_EQ(recording.recorded()[0].kind, RecordedExchange::Kind::kReduceScatter);
  EXPECT_EQ(recording.recorded()[1].kind, RecordedExchange::Kind::kAllGather);
  EXPECT_EQ(recording.recorded()[1].ops[1].shape, (std::vector<int64_t>{size * 3, 4}));
  const auto rs = world->counters().of_kind("reduce_scatter").sent, ag = world->counters().of_kind("all_gather").sent;
  ExchangeReplay({{world.get(), &recording.recorded()}}).run();
  EXPECT_EQ(world->counters().of_kind("reduce_scatter").sent, 2 * rs);
  EXPECT_EQ(world->counters().of_kind("all_gather").sent, 2 * ag);
}

}  // namespace
}  // namespace loom
