// The communicators of every ring a Zeppelin plan may use (ring_groups()), built once when a run
// starts: making a communicator is collective over every rank and far too slow to do each step,
// so the planner only ever picks rings from this fixed set.
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <vector>

#include "parallel/comm/communicator.h"
#include "parallel/placement/topology.h"
#include "parallel/sequence/sequence_shard.h"

namespace loom {

class RingCommunicators {
 public:
  // A communicator for device tensors over the ranks of a host one (NCCL on GPUs); where it is
  // empty or returns null, the host communicators carry the shards.
  using DeviceGroupFactory = std::function<std::unique_ptr<Communicator>(Communicator& host)>;

  // Collective over `replicas`, whose ranks are the topology's ranks (the dp x sp group).
  RingCommunicators(Communicator& replicas, const Topology& topology, const DeviceGroupFactory& device = {});

  // The ring over `ranks` (one of ring_groups(), in its order), of which this rank is a member.
  const Ring& at(const std::vector<int>& ranks) const;
  int64_t size() const { return static_cast<int64_t>(rings_.size()); }

 private:
  std::vector<std::unique_ptr<Communicator>> owned_;
  std::map<std::vector<int>, Ring> rings_;  // the rings this rank belongs to
};

}  // namespace loom
