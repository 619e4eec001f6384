#include "launch/bench/exchange_replay.h"

#include <chrono>

#include "runtime/core/error.h"

namespace loom {
namespace {

[[noreturn]] void refuse(const char* op) {
  fail(std::string("exchange replay: ") + op +
       " is not an exchange; the benchmark stand-ins only record and replay point-to-point exchanges, reduce-scatters "
       "and all-gathers");
}

RecordedExchange::Op shape_of(P2POp::Kind kind, int peer, const torch::Tensor& t) {
  return {kind, peer, t.sizes().vec(), t.scalar_type()};
}

RecordedExchange collective(RecordedExchange::Kind kind, const torch::Tensor& input, const torch::Tensor& output) {
  return {kind, {shape_of(P2POp::Kind::kSend, -1, input), shape_of(P2POp::Kind::kRecv, -1, output)}, 0};
}

torch::Tensor zeros_of(const RecordedExchange::Op& op) { return torch::zeros(op.shape, op.dtype); }

// The recorded exchange, ready to issue again on `comm` with buffers of its own.
std::function<CommHandle()> replay_of(Communicator& comm, const RecordedExchange& r) {
  using Kind = RecordedExchange::Kind;
  if (r.kind == Kind::kPointToPoint) {
    std::vector<P2POp> ops;
    for (const auto& op : r.ops) ops.push_back({op.kind, op.peer, zeros_of(op)});
    return [&comm, ops, channel = r.channel] { return comm.exchange(ops, channel); };
  }
  const auto input = zeros_of(r.ops[0]), output = zeros_of(r.ops[1]);
  if (r.kind == Kind::kReduceScatter) return [&comm, input, output] { return comm.reduce_scatter(input, output, ReduceOp::kSum); };
  return [&comm, input, output] { return comm.all_gather(input, output); };
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
CommHandle ExchangeOnlyCommunicator::start_all_to_all(torch::Tensor, const std::vector<int64_t>&, torch::Tensor,
                                                      const std::vector<int64_t>&) {
  refuse("all_to_all");
}
CommHandle ExchangeOnlyCommunicator::start_broadcast(torch::Tensor, int) { refuse("broadcast"); }
CommHandle ExchangeOnlyCommunicator::start_barrier() { refuse("barrier"); }

CommHandle RecordingCommunicator::start_exchange(const std::vector<P2POp>& ops, int channel) {
  RecordedExchange r;
  r.channel = channel;
  for (const auto& op : ops) r.ops.push_back(shape_of(op.kind, op.peer, op.tensor));
  recorded_.push_back(std::move(r));
  return real_.exchange(ops, channel);
}

CommHandle RecordingCommunicator::start_reduce_scatter(torch::Tensor input, torch::Tensor output, ReduceOp op) {
  recorded_.push_back(collective(RecordedExchange::Kind::kReduceScatter, input, output));
  return real_.reduce_scatter(input, output, op);
}

CommHandle RecordingCommunicator::start_all_gather(torch::Tensor input, torch::Tensor output) {
  recorded_.push_back(collective(RecordedExchange::Kind::kAllGather, input, output));
  return real_.all_gather(input, output);
}

CommHandle NullCommunicator::start_exchange(const std::vector<P2POp>& ops, int) {
  for (const auto& op : ops)
    if (op.kind == P2POp::Kind::kRecv) op.tensor.zero_();
  return {};
}

CommHandle NullCommunicator::start_reduce_scatter(torch::Tensor, torch::Tensor output, ReduceOp) {
  output.zero_();
  return {};
}

CommHandle NullCommunicator::start_all_gather(torch::Tensor, torch::Tensor output) {
  output.zero_();
  return {};
}

CommHandle WaitTimingCommunicator::start_exchange(const std::vector<P2POp>& ops, int channel) {
  return CommHandle(std::make_shared<TimedWork>(real_.exchange(ops, channel), waited_));
}

CommHandle WaitTimingCommunicator::start_reduce_scatter(torch::Tensor input, torch::Tensor output, ReduceOp op) {
  return CommHandle(std::make_shared<TimedWork>(real_.reduce_scatter(input, output, op), waited_));
}

CommHandle WaitTimingCommunicator::start_all_gather(torch::Tensor input, torch::Tensor output) {
  return CommHandle(std::make_shared<TimedWork>(real_.all_gather(input, output), waited_));
}

ExchangeReplay::ExchangeReplay(const std::vector<std::pair<Communicator*, const std::vector<RecordedExchange>*>>& streams) {
  for (const auto& [comm, recorded] : streams) {
    streams_.emplace_back();
    for (const auto& r : *recorded) streams_.back().push_back(replay_of(*comm, r));
  }
}

void ExchangeReplay::run() {
  // A communicator runs its operations in issue order, so issuing them all at once replays them
  // back to back, and the communicators run side by side.
  std::vector<CommHandle> pending;
  for (const auto& stream : streams_)
    for (const auto& issue : stream) pending.push_back(issue());
  for (auto& h : pending) h.wait();
}

}  // namespace loom
