// The hook through which a model's attention is computed by something other than local attention
// over its own tokens (a sequence-parallel group, or the key prefix of earlier chunks).
#pragma once
#include <torch/torch.h>

#include <functional>

namespace loom {

// (layer, q [Hq, n, d], k/v [Hkv, n, d] after RoPE, scale) -> out [Hq, n, d] for the model's tokens
// in layer `layer`.
using AttendFn = std::function<torch::Tensor(int64_t layer, const torch::Tensor& q, const torch::Tensor& k,
                                             const torch::Tensor& v, double scale)>;

}  // namespace loom
