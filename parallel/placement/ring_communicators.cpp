#include "parallel/placement/ring_communicators.h"

#include <algorithm>
#include <string>

#include "parallel/placement/planner.h"
#include "runtime/core/error.h"

namespace loom {
namespace {

std::string members_text(const std::vector<int>& ranks) {
  std::string s;
  for (const int r : ranks) s += (s.empty() ? "" : ",") + std::to_string(r);
  return s;
}

}  // namespace

RingCommunicators::RingCommunicators(Communicator& replicas, const Topology& topology, const DeviceGroupFactory& device) {
  check(topology.world() == replicas.size(), "the topology has " + std::to_string(topology.world()) +
                                                 " ranks but the placement runs over " + std::to_string(replicas.size()));
  // Rings of one size are disjoint blocks, so one split per size and direction makes all of them
  // (ranks in none of the blocks of a size form a group of their own, which nothing uses).
  std::map<size_t, std::vector<std::vector<int>>> by_size;
  for (auto& group : ring_groups(topology)) by_size[group.size()].push_back(std::move(group));
  const auto keep = [this](std::unique_ptr<Communicator> c) {
    owned_.push_back(std::move(c));
    return owned_.back().get();
  };
  const int me = replicas.rank();
  for (const auto& [size, groups] : by_size) {
    const auto mine = std::find_if(groups.begin(), groups.end(), [&](const std::vector<int>& g) {
      return std::find(g.begin(), g.end(), me) != g.end();
    });
    const int color = static_cast<int>(mine - groups.begin());
    const int key = mine == groups.end() ? me : static_cast<int>(std::find(mine->begin(), mine->end(), me) - mine->begin());
    const std::string name = "ring" + std::to_string(size);
    Ring ring{keep(replicas.split(color, key, name)), keep(replicas.split(color, key, name + "_back")),
              keep(replicas.split(color, key, name + "_sync"))};
    if (mine == groups.end()) continue;
    const auto on_device = [&](Communicator* host) {
      std::unique_ptr<Communicator> d = device ? device(*host) : nullptr;
      return d ? keep(std::move(d)) : host;
    };
    ring = {on_device(ring.forward), on_device(ring.back), on_device(ring.sync)};
    rings_[*mine] = ring;
  }
}

const Ring& RingCommunicators::at(const std::vector<int>& ranks) const {
  const auto it = rings_.find(ranks);
  check(it != rings_.end(), "no ring over ranks " + members_text(ranks) + " on this rank: plans must use ring_groups()");
  return it->second;
}

}  // namespace loom
