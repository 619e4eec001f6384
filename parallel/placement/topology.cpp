#include "parallel/placement/topology.h"

#include <yaml-cpp/yaml.h>

#include <set>

#include "runtime/core/error.h"
#include "runtime/core/text_file.h"

namespace loom {
namespace {

const std::set<std::string> kKeys = {"name",          "nodes",         "ranks_per_node", "nics_per_node",   "nic_gbyte_s",
                                     "intra_gbyte_s", "nic_latency_us", "intra_latency_us", "rank_tflops",
                                     "attention_tflops"};

double positive(const YAML::Node& root, const std::string& key, double fallback, const std::string& path) {
  if (!root[key]) return fallback;
  double value = 0;
  try {
    value = root[key].as<double>();
  } catch (const YAML::Exception&) {
    fail(path + ": " + key + " must be a number, got '" + root[key].Scalar() + "'");
  }
  check(value > 0, path + ": " + key + " must be positive, got " + root[key].Scalar());
  return value;
}

}  // namespace

Topology load_topology(const std::string& path) {
  YAML::Node root;
  try {
    root = YAML::Load(read_text_file(path, "topology file"));
  } catch (const YAML::Exception& e) {
    fail(path + ": not valid YAML (" + e.what() + "); a topology is a mapping such as 'nodes: 2'");
  }
  check(root.IsMap(), path + ": a topology is a YAML mapping of keys such as 'nodes: 2'");
  for (const auto& entry : root) {
    const auto key = entry.first.as<std::string>();
    check(kKeys.count(key) > 0, path + ": unknown key '" + key + "'; a topology has name, nodes, ranks_per_node, "
                                       "nics_per_node, nic_gbyte_s, intra_gbyte_s, nic_latency_us, intra_latency_us, "
                                       "rank_tflops, attention_tflops");
  }
  Topology t;
  t.name = root["name"] ? root["name"].as<std::string>() : path;
  const auto count = [&](const std::string& key, int fallback) {
    const double v = positive(root, key, fallback, path);
    check(v == static_cast<int>(v), path + ": " + key + " must be a whole number, got " + root[key].Scalar());
    return static_cast<int>(v);
  };
  t.nodes = count("nodes", t.nodes);
  t.ranks_per_node = count("ranks_per_node", t.ranks_per_node);
  t.nics_per_node = count("nics_per_node", t.nics_per_node);
  check(t.ranks_per_node % t.nics_per_node == 0,
        path + ": nics_per_node (" + std::to_string(t.nics_per_node) + ") must divide ranks_per_node (" +
            std::to_string(t.ranks_per_node) + "): each NIC serves the same number of ranks");
  t.nic_gbyte_s = positive(root, "nic_gbyte_s", t.nic_gbyte_s, path);
  t.intra_gbyte_s = positive(root, "intra_gbyte_s", t.intra_gbyte_s, path);
  t.nic_latency_s = positive(root, "nic_latency_us", t.nic_latency_s * 1e6, path) * 1e-6;
  t.intra_latency_s = positive(root, "intra_latency_us", t.intra_latency_s * 1e6, path) * 1e-6;
  t.rank_flops_per_s = positive(root, "rank_tflops", t.rank_flops_per_s * 1e-12, path) * 1e12;
  t.attention_flops_per_s = root["attention_tflops"] ? positive(root, "attention_tflops", 0, path) * 1e12 : 0;
  return t;
}

}  // namespace loom
