// Activation checkpointing for one function: its forward runs without keeping intermediates, and
// the backward runs it again with autograd and differentiates that. Memory then holds the
// function's inputs instead of everything it computed (LaCT keeps per-chunk fast weights instead of
// per-token intermediates this way).
#pragma once
#include <torch/torch.h>

#include <functional>
#include <vector>

namespace loom {

using TensorFunction = std::function<std::vector<torch::Tensor>(const std::vector<torch::Tensor>&)>;

// fn(inputs), with the same values and gradients, recomputed in the backward. fn must be
// deterministic and return fresh tensors (no views of its inputs); every input must be defined.
std::vector<torch::Tensor> recompute_in_backward(const TensorFunction& fn, const std::vector<torch::Tensor>& inputs);

}  // namespace loom
