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

// fn(inputs)[0] · weightᵀ (a linear layer without bias), keeping `inputs` instead of its input x:
// the backward recomputes x, forms the weight's gradient from it and backpropagates through fn.
// Megatron's selective recomputation for element-wise fn (SwiGLU's silu(gate)·up): the matmul's
// output and fn's inputs are kept, the cheap x of the same size is not. Gradients reach `inputs`
// and `weight` (fn's other tensors are constants); with grad mode off it is the plain product.
torch::Tensor linear_of_recomputed(const TensorFunction& fn, const std::vector<torch::Tensor>& inputs,
                                   const torch::Tensor& weight);

}  // namespace loom
