// Splitting a parallel algorithm's time into its computation and its communication, for the
// benchmarks' "fraction of communication hidden". The algorithms' exchanges are their point-to-point
// transfers and, for tensor parallelism's boundaries, reduce-scatters and all-gathers:
//   - RecordingCommunicator forwards every exchange to a real communicator and keeps its shape
//     (peers, sizes, dtypes, channel);
//   - ExchangeReplay issues the recorded exchanges again on the real communicators with nothing
//     computed between them: each communicator's exchanges run one after another, as they do in
//     the algorithm (each waits for its previous one), and different communicators concurrently;
//   - NullCommunicator completes every exchange at once without moving a byte (receive buffers are
//     and reduced or gathered outputs zero-filled), so the algorithm runs its computation alone;
//   - WaitTimingCommunicator forwards every exchange and adds up the time the caller spends blocked
//     in their wait(): the communication the computation did not hide, read inside the real run
//     rather than as the difference of two separately timed runs (which, at a few per cent of a
//     step, is within the noise of a shared machine).
// The other operations (all-reduce, all-to-all, broadcast, barrier, split) are refused.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "parallel/comm/communicator.h"

namespace loom {

struct RecordedExchange {
  enum class Kind { kPointToPoint, kReduceScatter, kAllGather };
  Kind kind = Kind::kPointToPoint;
  struct Op {
    P2POp::Kind kind;
    int peer;
    std::vector<int64_t> shape;
    torch::ScalarType dtype;
  };
  std::vector<Op> ops;  // point to point: the sends and receives; a collective: its input, then output
  int channel = 0;
};

// The part of Communicator a benchmark stand-in implements: exchange only, with the rank and size
// of the communicator it stands in for.
class ExchangeOnlyCommunicator : public Communicator {
 public:
  explicit ExchangeOnlyCommunicator(Communicator& real) : real_(real) {}
  int rank() const override { return real_.rank(); }
  int size() const override { return real_.size(); }
  const std::string& name() const override { return real_.name(); }
  std::unique_ptr<Communicator> split(int, int, const std::string&) override;

 protected:
  CommHandle start_all_reduce(torch::Tensor, ReduceOp) override;
  CommHandle start_all_to_all(torch::Tensor, const std::vector<int64_t>&, torch::Tensor, const std::vector<int64_t>&) override;
  CommHandle start_broadcast(torch::Tensor, int) override;
  CommHandle start_barrier() override;

  Communicator& real_;
};

// Each stand-in below implements the three exchanges.

class RecordingCommunicator : public ExchangeOnlyCommunicator {
 public:
  using ExchangeOnlyCommunicator::ExchangeOnlyCommunicator;
  const std::vector<RecordedExchange>& recorded() const { return recorded_; }

 protected:
  CommHandle start_exchange(const std::vector<P2POp>& ops, int channel) override;
  CommHandle start_reduce_scatter(torch::Tensor input, torch::Tensor output, ReduceOp op) override;
  CommHandle start_all_gather(torch::Tensor input, torch::Tensor output) override;

 private:
  std::vector<RecordedExchange> recorded_;
};

class NullCommunicator : public ExchangeOnlyCommunicator {
 public:
  using ExchangeOnlyCommunicator::ExchangeOnlyCommunicator;

 protected:
  CommHandle start_exchange(const std::vector<P2POp>& ops, int channel) override;
  CommHandle start_reduce_scatter(torch::Tensor input, torch::Tensor output, ReduceOp op) override;
  CommHandle start_all_gather(torch::Tensor input, torch::Tensor output) override;
};

class WaitTimingCommunicator : public ExchangeOnlyCommunicator {
 public:
  using ExchangeOnlyCommunicator::ExchangeOnlyCommunicator;
  // Seconds spent in wait() of this communicator's exchanges since construction or reset().
  double waited_seconds() const { return *waited_; }
  void reset() { *waited_ = 0; }

 protected:
  CommHandle start_exchange(const std::vector<P2POp>& ops, int channel) override;
  CommHandle start_reduce_scatter(torch::Tensor input, torch::Tensor output, ReduceOp op) override;
  CommHandle start_all_gather(torch::Tensor input, torch::Tensor output) override;

 private:
  std::shared_ptr<double> waited_ = std::make_shared<double>(0);  // shared with handles still pending
};

// The recorded exchanges of each communicator the algorithm used, ready to run again: buffers are
// allocated once, here; run() returns when every replayed exchange has completed.
class ExchangeReplay {
 public:
  explicit ExchangeReplay(const std::vector<std::pair<Communicator*, const std::vector<RecordedExchange>*>>& streams);
  void run();

 private:
  // Per communicator, its exchanges ready to issue, each with its buffers.
  std::vector<std::vector<std::function<CommHandle()>>> streams_;
};

}  // namespace loom
