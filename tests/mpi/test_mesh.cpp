// The mesh's groups hold exactly the ranks the rank order (tp fastest, then sp, then dp) says, and
// degrees that cannot work are start-up errors naming the degree.
#include <gtest/gtest.h>

#include <cstdlib>

#include "parallel/comm/mpi_communicator.h"
#include "parallel/mesh.h"
#include "runtime/core/error.h"

namespace loom {
namespace {

// The world ranks of `group`'s members, in group order.
std::vector<int64_t> members(Communicator& group, int world_rank) {
  auto mine = torch::full({1}, static_cast<int64_t>(world_rank), torch::kInt64);
  auto all = torch::empty({group.size()}, torch::kInt64);
  group.all_gather(mine, all).wait();
  return std::vector<int64_t>(all.data_ptr<int64_t>(), all.data_ptr<int64_t>() + group.size());
}

std::vector<int64_t> expected_members(const MeshShape& s, int64_t rank, char dim) {
  const MeshCoord c = mesh_coord(rank, s);
  std::vector<int64_t> out;
  for (int64_t r = 0; r < s.world(); ++r) {
    const MeshCoord o = mesh_coord(r, s);
    const bool same = dim == 't' ? (o.dp == c.dp && o.sp == c.sp) : dim == 's' ? (o.dp == c.dp && o.tp == c.tp)
                    : dim == 'd' ? (o.sp == c.sp && o.tp == c.tp) : o.tp == c.tp;
    if (same) out.push_back(r);
  }
  return out;
}

void expect_groups_follow_the_rank_order(const MeshGroups& g, const MeshShape& shape, int rank, const std::string& name) {
  for (Communicator* tp : {g.tp, g.tp_weave}) EXPECT_EQ(members(*tp, rank), expected_members(shape, rank, 't')) << name;
  for (Communicator* sp : {g.sp, g.sp_back, g.sp_sync}) EXPECT_EQ(members(*sp, rank), expected_members(shape, rank, 's')) << name;
  EXPECT_EQ(members(*g.dp, rank), expected_members(shape, rank, 'd')) << name;
  EXPECT_EQ(members(*g.dp_sp, rank), expected_members(shape, rank, 'x')) << name;
  EXPECT_EQ(g.world->size(), shape.world()) << name;
}

std::vector<MeshShape> shapes_for(int size) {
  std::vector<MeshShape> shapes = {{size, 1, 1}, {1, size, 1}, {1, 1, size}};
  if (size == 4) shapes.push_back({2, 2, 1}), shapes.push_back({1, 2, 2}), shapes.push_back({2, 1, 2});
  return shapes;
}

TEST(Mesh, GroupsFollowTheRankOrder) {
  const int size = mpi_world(60)->size();
  for (const auto& shape : shapes_for(size)) {
    Mesh mesh(mpi_world(60), shape);
    const int rank = mesh.host().world->rank();
    const std::string name = std::to_string(shape.dp) + "x" + std::to_string(shape.sp) + "x" + std::to_string(shape.tp);
    expect_groups_follow_the_rank_order(mesh.host(), shape, rank, name);
    // Without a device factory the tensors travel on the host groups themselves.
    EXPECT_EQ(mesh.device().dp_sp, mesh.host().dp_sp);
    // One machine unless the cluster test says how many ranks each emulated node holds.
    const char* per_node = std::getenv("LOOM_TEST_RANKS_PER_NODE");
    EXPECT_EQ(mesh.node().size(), per_node ? std::atoi(per_node) : size);
    EXPECT_NE(mesh.placement_table().find("rank " + std::to_string(size - 1) + ": dp"), std::string::npos);
    EXPECT_NE(mesh.placement_table().find("| cpu\n"), std::string::npos) << "the device each rank computes on";
  }
}

// With a factory (NCCL on GPUs) every device group is a communicator of its own over the ranks of
// its host group, and a collective on it reaches exactly those ranks.
TEST(Mesh, DeviceGroupsAreCommunicatorsOfTheirOwnOverTheSameRanks) {
  const int size = mpi_world(60)->size();
  for (const auto& shape : shapes_for(size)) {
    int made = 0;
    Mesh mesh(mpi_world(60), shape, c10::Device(c10::kCPU), [&](Communicator& host) {
      ++made;
      return host.split(0, host.rank(), host.name() + "_device");
    });
    const int rank = mesh.host().world->rank();
    const std::string name = std::to_string(shape.dp) + "x" + std::to_string(shape.sp) + "x" + std::to_string(shape.tp);
    EXPECT_EQ(made, 8) << name;
    expect_groups_follow_the_rank_order(mesh.device(), shape, rank, name);
    EXPECT_NE(mesh.device().dp_sp, mesh.host().dp_sp);
    EXPECT_EQ(mesh.device().sp->name(), "sp_device");
    EXPECT_EQ(mesh.host().sp->name(), "sp");
  }
}

TEST(Mesh, DegreesThatCannotWorkAreNamed) {
  Config c;
  c.model.n_heads = 4;
  c.model.n_kv_heads = 2;
  c.train.seq_len = 64;
  c.train.tokens_per_step = 256;
  c.parallel.sp = 3;
  auto message = [&](int64_t world) {
    try {
      resolve_mesh_shape(c, world);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message(4).find("parallel.sp x parallel.tp = 3 does not divide the world of 4"), std::string::npos) << message(4);
  c.parallel.sp = 1;
  c.parallel.tp = 4;
  EXPECT_NE(message(4).find("parallel.tp = 4 must divide model.n_heads = 4 and model.n_kv_heads = 2"), std::string::npos);
  c.parallel.tp = 1;
  c.parallel.dp = 3;
  EXPECT_NE(message(4).find("needs 3 ranks, but the job has 4"), std::string::npos) << message(4);
  c.parallel.dp = ParallelConfig::kAuto;
  EXPECT_EQ(resolve_mesh_shape(c, 4).dp, 4);
  EXPECT_NE(message(8).find("do not split evenly over dp = 8"), std::string::npos) << message(8);
}

}  // namespace
}  // namespace loom
