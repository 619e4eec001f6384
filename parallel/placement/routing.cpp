#include "parallel/placement/routing.h"

#include <algorithm>
#include <string>

#include "runtime/core/error.h"

namespace loom {
namespace {

// One rank of `node` behind each NIC, `first`'s NIC first (with `first` itself), then in NIC order.
std::vector<int> proxies_of(int first, int k, const Topology& t) {
  std::vector<int> ranks{first};
  const int base = t.node_of(first) * t.ranks_per_node;
  for (int nic = 0; nic < t.nics_per_node && static_cast<int>(ranks.size()) < k; ++nic)
    if (nic != t.nic_of(first)) ranks.push_back(base + nic * t.ranks_per_nic());
  return ranks;
}

// Part i of k over n elements, and piece p of it.
struct Parts {
  int64_t n, k, piece;
  int64_t begin(int64_t i) const { return n * i / k; }
  int64_t length(int64_t i) const { return begin(i + 1) - begin(i); }
  int64_t pieces(int64_t i) const { return (length(i) + piece - 1) / piece; }
  torch::Tensor piece_of(const torch::Tensor& part, int64_t p) const {
    return part.narrow(0, p * piece, std::min(piece, part.size(0) - p * piece));
  }
};

}  // namespace

NicRoute plan_route(int source, int dest, const Topology& topology, int k) {
  check(topology.node_of(source) != topology.node_of(dest),
        "routing: ranks " + std::to_string(source) + " and " + std::to_string(dest) +
            " share a node; routing spreads transfers between nodes over their NICs");
  check(k >= 1 && k <= topology.nics_per_node, "routing over " + std::to_string(k) + " NICs: give 1 to " +
                                                   std::to_string(topology.nics_per_node) + ", the NICs of a node");
  return {source, dest, proxies_of(source, k, topology), proxies_of(dest, k, topology)};
}

void routed_send(const RoutedTransfer& transfer, const torch::Tensor& data, const torch::Tensor& out,
                 Communicator& comm) {
  const NicRoute& route = transfer.route;
  const int me = comm.rank();
  const auto& senders = route.send_proxies;
  const auto& receivers = route.recv_proxies;
  const bool on_route = std::count(senders.begin(), senders.end(), me) + std::count(receivers.begin(), receivers.end(), me);
  if (!on_route) return;
  const Parts parts{transfer.numel, static_cast<int64_t>(senders.size()), transfer.piece_elements};
  const auto options = torch::TensorOptions().dtype(transfer.dtype);
  if (me == route.source) check(data.numel() == transfer.numel && data.is_contiguous(), "routing: the source's data must be "
                                "contiguous with the transfer's " + std::to_string(transfer.numel) + " elements");
  if (me == route.dest) check(out.numel() == transfer.numel && out.is_contiguous(), "routing: the dest's output must be "
                              "contiguous with the transfer's " + std::to_string(transfer.numel) + " elements");
  // Each part's buffer on its two proxies: the source's data and the dest's output where the proxy
  // is the end itself, else a buffer of the part's own.
  std::vector<torch::Tensor> held(parts.k);
  const auto part = [&](const torch::Tensor& whole, int64_t i) { return whole.view(-1).narrow(0, parts.begin(i), parts.length(i)); };
  for (int64_t i = 0; i < parts.k; ++i) {
    if (me == senders[i]) held[i] = me == route.source ? part(data, i) : torch::empty({parts.length(i)}, options);
    if (me == receivers[i]) held[i] = me == route.dest ? part(out, i) : torch::empty({parts.length(i)}, options);
  }
  int64_t rounds = 0;
  for (int64_t i = 0; i < parts.k; ++i) rounds = std::max(rounds, parts.pieces(i) + 2);
  for (int64_t round = 0; round < rounds; ++round) {
    std::vector<P2POp> ops;
    for (int64_t i = 0; i < parts.k; ++i) {
      // Stage s moves piece round - s of part i: source -> its proxy, proxy -> proxy, proxy -> dest.
      const int from[3] = {route.source, senders[i], receivers[i]}, to[3] = {senders[i], receivers[i], route.dest};
      for (int stage = 0; stage < 3; ++stage) {
        const int64_t p = round - stage;
        if (p < 0 || p >= parts.pieces(i) || from[stage] == to[stage]) continue;
        if (me == from[stage])
          ops.push_back(send_to(to[stage], parts.piece_of(stage == 0 ? part(data, i) : held[i], p)));
        if (me == to[stage]) ops.push_back(recv_from(from[stage], parts.piece_of(stage == 2 ? part(out, i) : held[i], p)));
      }
    }
    if (!ops.empty()) comm.exchange(ops).wait();
  }
}

}  // namespace loom
