#include "launch/bench/exchange_replay.h"

#include <chrono>

#include "runtime/core/error.h"

namespace loom {
namespace {

[[noreturn]] void refuse(const char* op) {
  fail(std::string("exchange replay: ") + op + " is not an exchange; the benchmark stand-ins only record and replay exchanges");
}

// A pending exchange whose first wait() adds the time it blocked to `waited`.
class TimedWork : public CommWork {
 public:
  TimedWork(CommHandle real, std::shared_ptr<double> waited) : real_(std::move(real)), waited_(std::move(waited)) {}
  void wait() override {
    if (done_) return;
    const auto t0 = std::chrono::steady_clock::now();
    real_.wait();
    *waited_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    done_ = true;
  }
  bool ready() override { return real_.ready(); }

 private:
  CommHandle real_;
  std::shared_ptr<double> waited_;
  bool done_ = false;
};

}  // namespace

std::unique_ptr<Communicator> ExchangeOnlyCommunicator::split(int, int, const std::string&) { refuse("split"); }
CommHandle ExchangeOnlyCommunicator::start_all_reduce(torch::Tensor, ReduceOp) { refuse("all_reduce"); }
CommHandle ExchangeOnlyCommunicator::start_reduce_scatter(torch::Tensor, torch::Tensor, ReduceOp) { refuse("reduce_scatter"); }
CommHandle ExchangeOnlyCommunicator::start_all_gather(torch::Tensor, torch::Tensor) { refuse("all_gather"); }
CommHandle ExchangeOnlyCommunicator::start_all_to_all(torch::Tensor, const std::vector<int64_t>&, torch::Tensor,
                                                      const std::vector<int64_t>&) {
  refuse("all_to_all");
}
CommHandle ExchangeOnlyCommunicator::start_broadcast(torch::Tensor, int) { refuse("broadcast"); }
CommHandle ExchangeOnlyCommunicator::start_barrier() { refuse("barrier"); }

CommHandle RecordingCommunicator::start_exchange(const std::vector<P2POp>& ops, int channel) {
  RecordedExchange r;
  r.channel = channel;
  for (const auto& op : ops) r.ops.push_back({op.kind, op.peer, op.tensor.sizes().vec(), op.tensor.scalar_type()});
  recorded_.push_back(std::move(r));
  return real_.exchange(ops, channel);
}

CommHandle NullCommunicator::start_exchange(const std::vector<P2POp>& ops, int) {
  for (const auto& op : ops)
    if (op.kind == P2POp::Kind::kRecv) op.tensor.zero_();
  return {};
}

CommHandle WaitTimingCommunicator::start_exchange(const std::vector<P2POp>& ops, int channel) {
  return CommHandle(std::make_shared<TimedWork>(real_.exchange(ops, channel), waited_));
}

ExchangeReplay::ExchangeReplay(const std::vector<std::pair<Communicator*, const std::vector<RecordedExchange>*>>& streams) {
  for (const auto& [comm, recorded] : streams) {
    Stream s{comm, {}, {}};
    for (const auto& r : *recorded) {
      s.exchanges.emplace_back();
      for (const auto& op : r.ops) s.exchanges.back().push_back({op.kind, op.peer, torch::zeros(op.shape, op.dtype)});
      s.channels.push_back(r.channel);
    }
    streams_.push_back(std::move(s));
  }
}

void ExchangeReplay::run() {
  // A communicator runs its operations in issue order, so issuing them all at once replays them
  // back to back, and the communicators run side by side.
  std::vector<CommHandle> pending;
  for (auto& s : streams_)
    for (size_t e = 0; e < s.exchanges.size(); ++e) pending.push_back(s.comm->exchange(s.exchanges[e], s.channels[e]));
  for (auto& h : pending) h.wait();
}

}  // namespace loom
