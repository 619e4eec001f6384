#include "parallel/mesh.h"

#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "runtime/core/error.h"

namespace loom {
namespace {

// Every rank's `text`, gathered (fixed-size records keep it one collective).
std::vector<std::string> gather_text(Communicator& world, const std::string& text) {
  constexpr int64_t kMax = 256;
  auto mine = torch::zeros({kMax}, torch::kUInt8);
  std::memcpy(mine.data_ptr(), text.data(), std::min<size_t>(text.size(), kMax - 1));
  auto all = torch::empty({world.size() * kMax}, torch::kUInt8);
  world.all_gather(mine, all).wait();
  std::vector<std::string> texts;
  for (int r = 0; r < world.size(); ++r) texts.emplace_back(reinterpret_cast<const char*>(all.data_ptr<uint8_t>() + r * kMax));
  return texts;
}

std::string host_name() {
  char name[256] = {};
  gethostname(name, sizeof name - 1);
  return name;
}

}  // namespace

MeshShape resolve_mesh_shape(const Config& config, int64_t world_size) {
  const auto& p = config.parallel;
  const auto& m = config.model;
  MeshShape s{p.dp, p.sp, p.tp};
  const int64_t inner = s.sp * s.tp;
  check(world_size % inner == 0, config.where("parallel.sp") + " x parallel.tp = " + std::to_string(inner) +
                                     " does not divide the world of " + std::to_string(world_size) +
                                     " ranks; launch a multiple of " + std::to_string(inner) + " ranks");
  if (s.dp == 0) s.dp = world_size / inner;
  check(s.world() == world_size, config.where("parallel.dp") + " = " + std::to_string(s.dp) + " with sp = " +
                                     std::to_string(s.sp) + " and tp = " + std::to_string(s.tp) + " needs " +
                                     std::to_string(s.world()) + " ranks, but the job has " + std::to_string(world_size) +
                                     "; launch that many or set parallel.dp: auto");
  check(m.n_heads % s.tp == 0 && m.n_kv_heads % s.tp == 0,
        config.where("parallel.tp") + " = " + std::to_string(s.tp) + " must divide model.n_heads = " +
            std::to_string(m.n_heads) + " and model.n_kv_heads = " + std::to_string(m.n_kv_heads));
  const int64_t micro = config.accumulation_steps();
  // A placement hands every rank all of a step's micro-batches, so only uniform needs dp to divide them.
  check(micro % s.dp == 0 || p.placement == "zeppelin", config.where("train.tokens_per_step") + " gives " + std::to_string(micro) +
                               " micro-batches of train.seq_len per step, which do not split evenly over dp = " +
                               std::to_string(s.dp) + " ranks; make tokens_per_step a multiple of dp x seq_len = " +
                               std::to_string(s.dp * config.train.seq_len));
  return s;
}

MeshCoord mesh_coord(int64_t rank, const MeshShape& s) {
  return {rank / (s.sp * s.tp), (rank / s.tp) % s.sp, rank % s.tp};
}

Mesh::Mesh(std::unique_ptr<Communicator> world, const MeshShape& shape, c10::Device device,
           const DeviceGroupFactory& device_groups)
    : shape_(shape), device_groups_(device_groups) {
  check(shape_.world() == world->size(), "the mesh " + std::to_string(shape_.dp) + "x" + std::to_string(shape_.sp) + "x" +
                                             std::to_string(shape_.tp) + " does not match the " +
                                             std::to_string(world->size()) + " ranks of the job");
  const auto keep = [this](std::unique_ptr<Communicator> c) {
    owned_.push_back(std::move(c));
    return owned_.back().get();
  };
  host_.world = keep(std::move(world));
  const MeshCoord c = coord();
  const auto s = shape_;
  const auto split = [&](int64_t color, int64_t key, const char* name) {
    return keep(host_.world->split(static_cast<int>(color), static_cast<int>(key), name));
  };
  host_.tp = split(c.dp * s.sp + c.sp, c.tp, "tp");
  host_.tp_weave = split(c.dp * s.sp + c.sp, c.tp, "tp_weave");
  host_.sp = split(c.dp * s.tp + c.tp, c.sp, "sp");
  host_.sp_back = split(c.dp * s.tp + c.tp, c.sp, "sp_back");
  host_.sp_sync = split(c.dp * s.tp + c.tp, c.sp, "sp_sync");
  host_.dp = split(c.sp * s.tp + c.tp, c.dp, "dp");
  host_.dp_sp = split(c.tp, c.dp * s.sp + c.sp, "dp_sp");
  device_ = host_;
  if (device_groups_) {
    for (Communicator** g : {&device_.world, &device_.dp, &device_.sp, &device_.sp_back, &device_.sp_sync, &device_.tp,
                             &device_.tp_weave, &device_.dp_sp})
      *g = keep(device_groups_(**g));
  }
  hosts_ = gather_text(*host_.world, host_name());
  devices_ = gather_text(*host_.world, device.str());
  for (size_t r = 0; r < hosts_.size(); ++r) {
    int64_t local = 0;
    for (size_t q = 0; q < r; ++q) local += hosts_[q] == hosts_[r];
    local_ranks_.push_back(local);
  }
  int node_color = 0;
  while (hosts_[node_color] != hosts_[host_.world->rank()]) ++node_color;
  node_ = split(node_color, host_.world->rank(), "node");
}

std::string Mesh::placement_table() const {
  std::string table;
  for (size_t r = 0; r < hosts_.size(); ++r) {
    const MeshCoord c = mesh_coord(static_cast<int64_t>(r), shape_);
    char line[640];
    std::snprintf(line, sizeof line, "  rank %zu: dp %ld sp %ld tp %ld | host %s | local rank %ld | %s\n", r, c.dp, c.sp, c.tp,
                  hosts_[r].c_str(), local_ranks_[r], devices_[r].c_str());
    table += line;
  }
  return table;
}

}  // namespace loom
