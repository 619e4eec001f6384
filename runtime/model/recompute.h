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
// Gradients reach only `inputs`: pass every tensor fn differentiates through as an input.
std::vector<torch::Tensor> recompute_in_backward(const TensorFunction& fn, const std::vector<torch::Tensor>& inputs);

// The same for functions that use parameters they are not given (a whole decoder layer with its
// modules): the backward recomputes fn with grad on and backpropagates through it, so the
// parameters' gradients accumulate into their .grad directly (PyTorch's reentrant checkpoint);
// the inputs' gradients are returned as usual. With grad mode off it is fn(inputs).
std::vector<torch::Tensor> recompute_module_in_backward(const TensorFunction& fn, const std::vector<torch::Tensor>& inputs);

}  // namespace loom
