#include "parallel/tensor/tensor_shard.h"

namespace loom {

TensorShard split_evenly(int64_t dim, int64_t whole, int64_t ranks, int64_t rank) {
  const int64_t stride = (whole + ranks - 1) / ranks;
  const int64_t begin = std::min(whole, rank * stride), end = std::min(whole, (rank + 1) * stride);
  return {dim, begin, end - begin, whole, stride};
}

torch::Tensor take_shard(const torch::Tensor& whole, const TensorShard& shard) {
  if (!shard.split()) return whole;
  return whole.narrow(shard.dim, shard.begin, shard.size).contiguous();
}

std::vector<int64_t> whole_shape(const TensorShard& shard, std::vector<int64_t> slice_shape) {
  if (shard.split()) slice_shape[static_cast<size_t>(shard.dim)] = shard.whole;
  return slice_shape;
}

std::vector<FlatRun> whole_runs(const TensorShard& shard, const std::vector<int64_t>& whole_shape, int64_t begin,
                                int64_t count) {
  if (count == 0) return {};
  if (!shard.split()) return {{begin, begin, count}};
  int64_t inner = 1;  // elements per index along the split dimension
  for (size_t d = static_cast<size_t>(shard.dim) + 1; d < whole_shape.size(); ++d) inner *= whole_shape[d];
  const int64_t run = shard.size * inner, row = shard.whole * inner;  // per index of the dimensions before it
  std::vector<FlatRun> runs;
  for (int64_t at = begin; at < begin + count;) {
    const int64_t within = at % run, n = std::min(run - within, begin + count - at);
    runs.push_back({at / run * row + shard.begin * inner + within, at, n});
    at += n;
  }
  return runs;
}

torch::Tensor gather_shards(const torch::Tensor& mine, const TensorShard& shard, Communicator& tp) {
  if (!shard.split()) return mine;
  // Every rank's slice as `stride` leading rows (padded), so one all-gather concatenates them.
  auto rows = mine.transpose(0, shard.dim);
  std::vector<int64_t> shape(rows.sizes().begin(), rows.sizes().end());
  shape[0] = shard.stride;
  auto padded = torch::zeros(shape, mine.options());
  padded.narrow(0, 0, shard.size).copy_(rows);
  shape[0] = shard.stride * tp.size();
  auto all = torch::empty(shape, mine.options());
  tp.all_gather(padded, all).wait();
  return all.narrow(0, 0, shard.whole).transpose(0, shard.dim).contiguous();
}

TensorShard shard_of(const TensorLayout& layout, const std::string& name) {
  for (std::string key = name;;) {
    const auto it = layout.find(key);
    if (it != layout.end()) return it->second;
    const auto dot = key.rfind('.');
    if (dot == std::string::npos) return {};
    key.resize(dot);
  }
}

NamedTensors gather_named(const NamedTensors& mine, const TensorLayout& layout, Communicator& tp) {
  NamedTensors whole;
  for (const auto& [name, t] : mine) whole.emplace_back(name, gather_shards(t.detach(), shard_of(layout, name), tp));
  return whole;
}

NamedTensors take_named(const NamedTensors& whole, const TensorLayout& layout) {
  NamedTensors mine;
  for (const auto& [name, t] : whole) mine.emplace_back(name, take_shard(t, shard_of(layout, name)));
  return mine;
}

}  // namespace loom
