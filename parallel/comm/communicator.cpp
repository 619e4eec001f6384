#include "parallel/comm/communicator.h"

#include <numeric>

#include "runtime/core/error.h"

namespace loom {

void CommCounters::add(const std::string& kind, int peer, int64_t sent, int64_t received) {
  Bytes& b = by_kind[kind][peer];
  b.sent += sent;
  b.received += received;
  b.calls += 1;
}

CommCounters::Bytes CommCounters::of_kind(const std::string& kind) const {
  Bytes total;
  auto it = by_kind.find(kind);
  if (it == by_kind.end()) return total;
  for (const auto& [peer, b] : it->second) {
    total.sent += b.sent;
    total.received += b.received;
    total.calls += b.calls;
  }
  return total;
}

CommCounters::Bytes CommCounters::with_peer(int peer) const {
  Bytes total;
  for (const auto& [kind, peers] : by_kind) {
    auto it = peers.find(peer);
    if (it == peers.end()) continue;
    total.sent += it->second.sent;
    total.received += it->second.received;
    total.calls += it->second.calls;
  }
  return total;
}

std::string Communicator::where(const std::string& op) const { return op + " on group '" + name() + "'"; }

CommHandle Communicator::all_reduce(torch::Tensor tensor, ReduceOp op) {
  check(tensor.defined(), where("all_reduce") + ": the tensor is undefined");
  check(op != ReduceOp::kAvg || tensor.is_floating_point(), where("all_reduce") + ": averaging needs a floating-point tensor");
  counters_.add("all_reduce", CommCounters::kGroup, bytes_of(tensor), bytes_of(tensor));
  return start_all_reduce(std::move(tensor), op);
}

CommHandle Communicator::reduce_scatter(torch::Tensor input, torch::Tensor output, ReduceOp op) {
  check(input.defined() && output.defined() && input.numel() == output.numel() * size(),
        where("reduce_scatter") + ": the input must hold " + std::to_string(size()) + " times the output's elements");
  check(op != ReduceOp::kAvg || input.is_floating_point(), where("reduce_scatter") + ": averaging needs a floating-point tensor");
  counters_.add("reduce_scatter", CommCounters::kGroup, bytes_of(input), bytes_of(output));
  return start_reduce_scatter(std::move(input), std::move(output), op);
}

CommHandle Communicator::all_gather(torch::Tensor input, torch::Tensor output) {
  check(input.defined() && output.defined() && output.numel() == input.numel() * size(),
        where("all_gather") + ": the output must hold " + std::to_string(size()) + " times the input's elements");
  counters_.add("all_gather", CommCounters::kGroup, bytes_of(input), bytes_of(output));
  return start_all_gather(std::move(input), std::move(output));
}

CommHandle Communicator::all_to_all(torch::Tensor input, const std::vector<int64_t>& send_rows, torch::Tensor output,
                                    const std::vector<int64_t>& recv_rows) {
  auto check_rows = [&](const torch::Tensor& t, const std::vector<int64_t>& rows, const char* what) {
    check(static_cast<int>(rows.size()) == size(), where("all_to_all") + ": " + what + " needs one entry per rank (" +
                                                       std::to_string(size()) + "), got " + std::to_string(rows.size()));
    for (int64_t r : rows) check(r >= 0, where("all_to_all") + ": " + what + " has a negative count");
    const int64_t total = std::accumulate(rows.begin(), rows.end(), int64_t{0});
    check(t.defined() && t.dim() > 0 && t.size(0) == total,
          where("all_to_all") + ": the tensor has " + std::to_string(t.defined() && t.dim() > 0 ? t.size(0) : 0) +
              " rows but " + what + " add up to " + std::to_string(total));
  };
  check_rows(input, send_rows, "send_rows");
  check_rows(output, recv_rows, "recv_rows");
  // Compared by shape, not by numel per row: a rank may send or receive no rows at all.
  check(input.sizes().slice(1) == output.sizes().slice(1), where("all_to_all") + ": input and output rows differ in shape");
  const int64_t row_bytes = bytes_of(input) / std::max<int64_t>(1, input.size(0));
  for (int p = 0; p < size(); ++p) {
    if (p != rank()) counters_.add("all_to_all", p, send_rows[p] * row_bytes, recv_rows[p] * row_bytes);
  }
  return start_all_to_all(std::move(input), send_rows, std::move(output), recv_rows);
}

CommHandle Communicator::broadcast(torch::Tensor tensor, int root) {
  check(tensor.defined(), where("broadcast") + ": the tensor is undefined");
  check(root >= 0 && root < size(), where("broadcast") + ": root " + std::to_string(root) + " is not a rank");
  const bool sending = rank() == root;
  counters_.add("broadcast", CommCounters::kGroup, sending ? bytes_of(tensor) : 0, sending ? 0 : bytes_of(tensor));
  return start_broadcast(std::move(tensor), root);
}

CommHandle Communicator::barrier() {
  counters_.add("barrier", CommCounters::kGroup, 0, 0);
  return start_barrier();
}

CommHandle Communicator::exchange(const std::vector<P2POp>& ops, int channel) {
  for (const auto& op : ops) {
    check(op.tensor.defined(), where("exchange") + ": a tensor is undefined");
    check(op.peer >= 0 && op.peer < size(), where("exchange") + ": peer " + std::to_string(op.peer) +
                                                " is not a rank of this group of " + std::to_string(size()));
    const bool send = op.kind == P2POp::Kind::kSend;
    counters_.add("p2p", op.peer, send ? bytes_of(op.tensor) : 0, send ? 0 : bytes_of(op.tensor));
  }
  return start_exchange(ops, channel);
}

}  // namespace loom
