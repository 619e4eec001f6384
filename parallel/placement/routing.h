// Zeppelin's routing layer (Chen et al., arXiv 2509.21841): one rank sits behind one
// NIC, so a transfer between two nodes uses one NIC of each while the others may idle. A routed
// transfer splits the data over k proxy ranks of the sending node, each behind a different NIC
// (an intra-node hop), sends the k parts between nodes in parallel, one per NIC, and gathers them on
// the receiving rank (another intra-node hop). The three stages run as a pipeline over pieces of
// each part, so all of them are busy at once after the first two pieces.
#pragma once
#include <torch/torch.h>

#include <vector>

#include "parallel/comm/communicator.h"
#include "parallel/placement/topology.h"

namespace loom {

struct NicRoute {
  int source = 0, dest = 0;
  std::vector<int> send_proxies;  // k ranks of the source's node, behind distinct NICs; the source first
  std::vector<int> recv_proxies;  // k ranks of the dest's node, likewise; the dest first
};

// A route over `k` NICs (at most the nodes' NIC count) between ranks of two different nodes.
NicRoute plan_route(int source, int dest, const Topology& topology, int k);

// What moves: `numel` elements of `dtype`, in pieces of `piece_elements` (the pipeline's grain).
struct RoutedTransfer {
  NicRoute route;
  int64_t numel = 0;
  torch::ScalarType dtype = torch::kFloat32;
  int64_t piece_elements = 1 << 20;
};

// Called by every rank of `comm` (whose ranks are the topology's) with the same transfer; ranks off
// the route return at once. `data` is the source's (contiguous, `numel` elements), `out` the dest's
// (contiguous, receives them in order); on other ranks both are ignored.
void routed_send(const RoutedTransfer& transfer, const torch::Tensor& data, const torch::Tensor& out,
                 Communicator& comm);

}  // namespace loom
