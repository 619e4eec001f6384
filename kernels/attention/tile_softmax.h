// The block kernel's elementwise steps on a score tile. Float32 on the CPU runs them fused, one or
// two passes over each row with kernels/vector_exp.h: as separate LibTorch ops (max, subtract, exp,
// sum, and again in the backward) they took about as long as the tile's two matrix products at
// head dimension 32. Other dtypes and devices run the same steps as LibTorch ops.
#pragma once
#include <torch/torch.h>

namespace loom {

// One online-softmax step of the forward. p [H, rows, tk] holds a tile's scores, to be taken as
// -inf where `hidden` [rows, tk] (bool, the same for every head; undefined for none) is set; row_max, row_sum [H, rows] and o [H, rows, d] are the query tile's running state. With
// m = max(row_max, max_j p) (at least `lowest`, so that a row which has seen no key keeps exp() at 0
// rather than NaN): p <- exp(p - m), row_sum <- row_sum * exp(row_max - m) + sum_j p,
// o <- o * exp(row_max - m), row_max <- m. All updated in place, so they may be views (a run of
// rows of a larger state).
void softmax_step(const torch::Tensor& p, const torch::Tensor& hidden, const torch::Tensor& row_max, const torch::Tensor& row_sum,
                  const torch::Tensor& o, double lowest);

// The backward's probabilities: s <- exp(s - lse), 0 where `hidden` is set (as above), lse
// [H, rows, 1] (finite), s [H, rows, tk].
void exp_shifted(const torch::Tensor& s, const torch::Tensor& hidden, const torch::Tensor& lse);

// The backward's score gradients: dp <- (dp - delta) * p, delta [H, rows, 1]; dp and p [H, rows, tk].
void softmax_grad(const torch::Tensor& dp, const torch::Tensor& delta, const torch::Tensor& p);

// The fused path takes each operand whose rows are contiguous and packed within each head (dim 0),
// the heads at any stride: whole contiguous tensors and runs of rows sliced out of them.

}  // namespace loom
