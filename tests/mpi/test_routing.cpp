// Zeppelin's routing layer on real ranks: a transfer between nodes, spread over k proxy ranks
// behind distinct NICs and pipelined in pieces, arrives intact and in order, for every k the
// nodes' NICs allow, sizes that k does not divide (and smaller than k), and pieces from two
// elements to the whole part. 2 ranks: 2 nodes of 1; 3: 3 nodes of 1 (one rank off the route);
// 4: 2 nodes of 2 with 2 NICs; 8 (its own ctest): 2 nodes of 4 with 4 NICs.
#include <gtest/gtest.h>

#include "parallel/comm/mpi_communicator.h"
#include "parallel/placement/routing.h"
#include "runtime/core/error.h"

#include <set>

namespace loom {
namespace {

Topology topology_for(int size) {
  Topology t;
  t.nodes = size == 3 ? 3 : 2;
  t.ranks_per_node = size / t.nodes;
  t.nics_per_node = t.ranks_per_node;
  return t;
}

TEST(Routing, RoutedTransfersArriveIntactAndInOrder) {
  std::unique_ptr<Communicator> comm = mpi_world(60);
  const Topology t = topology_for(comm->size());
  const int last_node = (t.nodes - 1) * t.ranks_per_node;
  for (const int source : {0, t.ranks_per_node - 1}) {
    for (const int dest : {last_node, t.world() - 1}) {
      for (int k = 1; k <= t.nics_per_node; ++k) {
        for (const int64_t numel : {int64_t{3}, int64_t{1001}}) {
          for (const int64_t piece : {int64_t{2}, int64_t{64}, int64_t{1} << 20}) {
            const RoutedTransfer transfer{plan_route(source, dest, t, k), numel, torch::kFloat64, piece};
            torch::manual_seed(static_cast<uint64_t>(numel * 31 + k));
            const auto data = torch::randn({numel}, torch::kFloat64);  // the same on every rank: the source's
            const auto out = torch::full({numel}, -1.0, torch::kFloat64);
            routed_send(transfer, data, out, *comm);
            if (comm->rank() == dest)
              EXPECT_TRUE(torch::equal(out, data)) << source << " -> " << dest << " over " << k << " NICs, " << numel
                                                   << " elements in pieces of " << piece;
            else
              EXPECT_TRUE(torch::equal(out, torch::full({numel}, -1.0, torch::kFloat64))) << "rank " << comm->rank()
                                                                                          << " is not the dest";
          }
        }
      }
    }
  }
}

TEST(Routing, ProxiesSitBehindDistinctNicsAndBadRoutesAreRefused) {
  Topology t;
  t.nodes = 2;
  t.ranks_per_node = 8;
  t.nics_per_node = 4;
  const NicRoute r = plan_route(5, 9, t, 4);
  ASSERT_EQ(r.send_proxies.size(), 4u);
  EXPECT_EQ(r.send_proxies.front(), 5);
  EXPECT_EQ(r.recv_proxies.front(), 9);
  std::set<int> nics;
  for (const int p : r.send_proxies) {
    EXPECT_EQ(t.node_of(p), 0);
    nics.insert(t.nic_of(p));
  }
  EXPECT_EQ(nics.size(), 4u);
  EXPECT_THROW(plan_route(1, 2, t, 2), Error);   // one node
  EXPECT_THROW(plan_route(1, 9, t, 5), Error);   // more NICs than a node has
}

}  // namespace
}  // namespace loom
