// How one tensor is split over the tp ranks, and the two moves checkpoints need: this rank's slice
// of the whole tensor (loading), and the whole tensor from every rank's slice (saving), so that
// checkpoints hold whole tensors under their Hugging Face names whatever the tp degree.
#pragma once
#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "parallel/comm/communicator.h"
#include "runtime/core/named_tensors.h"

namespace loom {

struct TensorShard {
  int64_t dim = -1;     // the split dimension; -1: every rank holds the whole tensor
  int64_t begin = 0;    // this rank's slice along dim
  int64_t size = 0;
  int64_t whole = 0;    // the whole tensor's extent along dim
  int64_t stride = 0;   // the slice every rank but the last ones holds (ceil(whole / ranks))

  bool split() const { return dim >= 0; }
};

// How every split tensor of a model is split, by name; a name not in it is held whole by every rank.
using TensorLayout = std::map<std::string, TensorShard>;

// Rank `rank`'s slice of `whole` rows along `dim`: ceil(whole / ranks) each, the last ones fewer.
TensorShard split_evenly(int64_t dim, int64_t whole, int64_t ranks, int64_t rank);

torch::Tensor take_shard(const torch::Tensor& whole, const TensorShard& shard);

// The shape of the whole tensor a slice of `slice_shape` belongs to.
std::vector<int64_t> whole_shape(const TensorShard& shard, std::vector<int64_t> slice_shape);

// `count` consecutive elements of a shard's row-major flattening, from element `shard_begin`, are
// the whole tensor's from element `whole_begin`.
struct FlatRun {
  int64_t whole_begin, shard_begin, count;
};

// Where elements [begin, begin + count) of `shard`'s flattening lie in the flattening of the whole
// tensor of `whole_shape`: one run for a split along the first dimension (or none), else one per
// index of the dimensions before the split that the range crosses (a row of a matrix split by
// columns). ZeRO's flat parts of tensor-parallel slices become pieces of the whole tensors this way.
std::vector<FlatRun> whole_runs(const TensorShard& shard, const std::vector<int64_t>& whole_shape, int64_t begin,
                                int64_t count);

// Collective over `tp`: the whole tensor on every rank.
torch::Tensor gather_shards(const torch::Tensor& mine, const TensorShard& shard, Communicator& tp);

// The shard of `name` in `layout`; a state tensor "<param>.<what>" (an optimizer moment) is split
// as <param> is.
TensorShard shard_of(const TensorLayout& layout, const std::string& name);

// Every tensor whole (collective over `tp`), or this rank's slice of every whole tensor.
NamedTensors gather_named(const NamedTensors& mine, const TensorLayout& layout, Communicator& tp);
NamedTensors take_named(const NamedTensors& whole, const TensorLayout& layout);

}  // namespace loom
