// A list of tensors under their names, in order: what checkpoints store and optimizers keep state for.
#pragma once
#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

namespace loom {

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

}  // namespace loom
