// The cluster a placement is planned for (Zeppelin: Chen et al., arXiv 2509.21841): how
// many nodes, how many ranks each, how many NICs each and which ranks sit behind which NIC, and
// the bandwidth of the links between ranks. Rank r lives on node r / ranks_per_node; inside a node
// the ranks are spread evenly over the NICs in order (ranks 0..k-1 behind NIC 0, and so on), as
// GPUs sit on the PCIe switches of a node.
#pragma once
#include <string>

namespace loom {

struct Topology {
  std::string name;
  int nodes = 1;
  int ranks_per_node = 1;
  int nics_per_node = 1;
  double nic_gbyte_s = 12.5;    // one NIC's bandwidth, each direction
  double intra_gbyte_s = 150;   // one ring edge between two ranks of a node
  double nic_latency_s = 5e-6;  // per message over a NIC
  double intra_latency_s = 2e-6;
  double rank_flops_per_s = 2e14;  // what one rank achieves in training, for the cost model
  double attention_flops_per_s = 0;  // its rate on attention where measured apart (0: rank_flops_per_s)

  int world() const { return nodes * ranks_per_node; }
  int node_of(int rank) const { return rank / ranks_per_node; }
  // The node-local index of the NIC that `rank`'s traffic leaves by.
  int nic_of(int rank) const { return (rank % ranks_per_node) * nics_per_node / ranks_per_node; }
  int ranks_per_nic() const { return ranks_per_node / nics_per_node; }
};

// A topology from a YAML file (configs/topology/): the keys above, bandwidths in GB/s, latencies in
// microseconds, the rank's rate in TFLOP/s (rank_tflops) and on attention where it differs
// (attention_tflops, as `loom bench calibrate` measures them). Missing keys keep their defaults; unknown keys, non-positive values and NIC counts
// that do not divide the ranks of a node are errors naming the file.
Topology load_topology(const std::string& path);

}  // namespace loom
