// RMSNorm: x / sqrt(mean(x^2) + eps) * weight, computed in at least float32 whatever x's dtype.
// This is the reference the fused AllReduce + residual + RMSNorm kernels of TokenWeave are checked
// against, and the norm every Loom model uses.
#pragma once
#include <torch/torch.h>

namespace loom {

torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps);

}  // namespace loom
