// The parallel mesh: world = dp x sp x tp, rank order tp fastest, then sp, then dp, so the groups
// that talk most (tp, then sp) are neighbours and stay inside a node when ranks fill nodes in order.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

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

class Mesh {
 public:
  // Collective over `world`: splits it into the groups below.
  Mesh(std::unique_ptr<Communicator> world, const MeshShape& shape);

  const MeshShape& shape() const { return shape_; }
  MeshCoord coord() const { return mesh_coord(world_->rank(), shape_); }
  bool is_root() const { return world_->rank() == 0; }

  Communicator& world() { return *world_; }
  Communicator& dp() { return *dp_; }
  Communicator& sp() { return *sp_; }
  // A second communicator over the sp group, so two streams of sp traffic (TokenRing's queries and
  // returned partials) progress independently.
  Communicator& sp_back() { return *sp_back_; }
  // A third, for LaCT's fast-weight update sums, whose backward interleaves with attention's.
  Communicator& sp_sync() { return *sp_sync_; }
  Communicator& tp() { return *tp_; }
  // Ranks holding the same weights with different data: gradients are reduced over this group.
  Communicator& dp_sp() { return *dp_sp_; }
  Communicator& node() { return *node_; }

  // One line per rank: mesh coordinates, host, local rank and device.
  std::string placement_table() const;

 private:
  MeshShape shape_;
  std::unique_ptr<Communicator> world_, dp_, sp_, sp_back_, sp_sync_, tp_, dp_sp_, node_;
  std::vector<std::string> hosts_;  // per world rank
  std::vector<int64_t> local_ranks_;
};

}  // namespace loom
