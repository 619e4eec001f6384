// A list of tensors under their names, in order: what checkpoints store and optimizers keep state for.
#pragma once
#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

namespace loom {

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

// Elements [begin, begin + values.numel()) of the row-major flattening of the tensor `name`, whose
// whole shape is `shape`: what a rank holding part of a tensor (ZeRO's parts) writes of it. A piece
// with begin 0 and every element is the whole tensor.
struct TensorPiece {
  std::string name;
  std::vector<int64_t> shape;
  int64_t begin = 0;
  torch::Tensor values;
};
using TensorPieces = std::vector<TensorPiece>;

// Whole tensors as pieces.
inline TensorPieces whole_pieces(const NamedTensors& tensors) {
  TensorPieces out;
  for (const auto& [name, t] : tensors) out.push_back({name, t.sizes().vec(), 0, t});
  return out;
}

}  // namespace loom
