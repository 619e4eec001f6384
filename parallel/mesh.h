// The parallel mesh: world = dp x sp x tp, rank order tp fastest, then sp, then dp, so the groups
// that talk most (tp, then sp) are neighbours and stay inside a node when ranks fill nodes in order.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <c10/core/Device.h>

#include "parallel/comm/communicator.h"
#include "runtime/core/config.h"

namespace loom {

struct MeshShape {
  int64_t dp = 1, sp = 1, tp = 1;
  int64_t world() const { return dp * sp * tp; }
};

// Resolves parallel.dp: auto (what sp x tp leave of the world) and checks every degree against the
// world size and the model; each error says which degree and why.
MeshShape resolve_mesh_shape(const Config& config, int64_t world_size);

struct MeshCoord {
  int64_t dp = 0, sp = 0, tp = 0;
};
MeshCoord mesh_coord(int64_t rank, const MeshShape& shape);

// One communicator per dimension of the mesh, for one kind of traffic.
struct MeshGroups {
  Communicator* world = nullptr;
  Communicator* dp = nullptr;
  Communicator* sp = nullptr;
  // Two more over the sp group, so that independent streams of sp traffic do not queue behind each
  // other: TokenRing's returned partials, and LaCT's fast-weight update sums (whose backward
  // interleaves with attention's).
  Communicator* sp_back = nullptr;
  Communicator* sp_sync = nullptr;
  Communicator* tp = nullptr;
  // One more over the tp group for TokenWeave's residual boundaries, which run on a worker thread
  // while the layers (and the vocabulary-parallel loss) use `tp` on the training thread.
  Communicator* tp_weave = nullptr;
  // Ranks holding the same weights with different data: gradients are reduced over this group.
  Communicator* dp_sp = nullptr;
};

class Mesh {
 public:
  // A communicator over the same ranks as `host` (an MPI group) for device tensors: NCCL on GPUs.
  using DeviceGroupFactory = std::function<std::unique_ptr<Communicator>(Communicator& host)>;

  // Collective over `world`: splits it into the groups below. `device` is where this rank computes
  // (for the placement table). Without a factory the device groups are the host groups (CPU
  // tensors travel over MPI).
  Mesh(std::unique_ptr<Communicator> world, const MeshShape& shape, c10::Device device = c10::Device(c10::kCPU),
       const DeviceGroupFactory& device_groups = {});

  const MeshShape& shape() const { return shape_; }
  MeshCoord coord() const { return mesh_coord(host_.world->rank(), shape_); }
  bool is_root() const { return host_.world->rank() == 0; }

  // Host groups carry CPU scalars and agreement: label counts, loss sums, the stop flag, barriers.
  const MeshGroups& host() const { return host_; }
  // Device groups carry the tensors training moves: gradients, attention's shards, LaCT's update
  // sums, the initial weights. No CPU scalar is ever sent on them (NCCL refuses CPU tensors).
  const MeshGroups& device() const { return device_; }
  // The ranks of this node (host group).
  Communicator& node() const { return *node_; }
  // The device communicator over the ranks of `host` (a group split from these), or null where the
  // device groups are the host groups. Collective over `host`.
  std::unique_ptr<Communicator> device_group(Communicator& host) const {
    return device_groups_ ? device_groups_(host) : nullptr;
  }

  // One line per rank: mesh coordinates, host, local rank and the device it computes on.
  std::string placement_table() const;
  // The host each world rank runs on.
  const std::vector<std::string>& hosts() const { return hosts_; }

 private:
  MeshShape shape_;
  DeviceGroupFactory device_groups_;
  std::vector<std::unique_ptr<Communicator>> owned_;
  MeshGroups host_, device_;
  Communicator* node_ = nullptr;
  std::vector<std::string> hosts_, devices_;  // per world rank
  std::vector<int64_t> local_ranks_;
};

}  // namespace loom
