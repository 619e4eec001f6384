// A list of tensors under their names, in order: what checkpoints store and optimizers keep state for.
#pragma once
#include <torch/torch.h>

#include <algorithm>
#include <cstdint>
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

// Which of `ranks` ranks takes each tensor when they share tensors out whole, balanced by bytes:
// largest first, each to the least loaded rank (ties to the lower rank). The same on every rank.
inline std::vector<int64_t> balanced_owners(const NamedTensors& tensors, int64_t ranks) {
  std::vector<size_t> order(tensors.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  auto bytes = [&](size_t i) { return tensors[i].second.numel() * static_cast<int64_t>(tensors[i].second.element_size()); };
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return bytes(a) > bytes(b); });
  std::vector<int64_t> load(static_cast<size_t>(ranks), 0), owner(tensors.size(), 0);
  for (size_t i : order) {
    owner[i] = std::min_element(load.begin(), load.end()) - load.begin();
    load[static_cast<size_t>(owner[i])] += bytes(i);
  }
  return owner;
}

// Whole tensors as pieces.
inline TensorPieces whole_pieces(const NamedTensors& tensors) {
  TensorPieces out;
  for (const auto& [name, t] : tensors) out.push_back({name, t.sizes().vec(), 0, t});
  return out;
}

}  // namespace loom
