// A residual boundary on one rank's rows, as tensor parallelism with sequence-sharded norms computes
// it after the reduce-scatter: sum = h + s, normed = RMSNorm(sum) * weight, with the statistics in
// float32 or wider (as rms_norm.h), and its backward. The reference the fused GPU kernels of
// TokenWeave's reduce + add + norm are checked against.
#pragma once
#include <torch/torch.h>

namespace loom {

struct AddNorm {
  torch::Tensor sum;     // h + s, in s's dtype
  torch::Tensor normed;  // RMSNorm(sum) * weight
  torch::Tensor rstd;    // 1 / sqrt(mean(sum^2) + eps) per row, [rows, 1], accumulation dtype
};

// h may be undefined (the embedding's boundary: sum = s).
AddNorm add_rms_norm(const torch::Tensor& h, const torch::Tensor& s, const torch::Tensor& weight, double eps);

struct AddNormGrads {
  torch::Tensor dsum;     // of sum, which is also the gradient of h and of s
  torch::Tensor dweight;  // of weight, summed over these rows
};

// dnormed: the gradient of `normed`; dsum_after: what later layers sent back into `sum` directly
// (the residual stream), undefined for none.
AddNormGrads add_rms_norm_backward(const AddNorm& forward, const torch::Tensor& weight, const torch::Tensor& dnormed,
                                   const torch::Tensor& dsum_after);

}  // namespace loom
