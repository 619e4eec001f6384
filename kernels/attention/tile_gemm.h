// The block kernel's matrix products, one per head over the leading dimension, op transposing a
// matrix's two last dimensions when asked. Operands may be row slices of larger tensors (any row and
// head strides).
//
// Float32 on the CPU goes to oneDNN's sgemm where the build found it (LOOM_HAVE_DNNL): on the
// kernel's small tile shapes (K or N = 32, 128-256 rows) it is well ahead of OpenBLAS, while the two
// are level on large square products (docs/benchmarks/block-kernel.md). Everything else goes
// through torch::bmm / baddbmm.
#pragma once
#include <torch/torch.h>

namespace loom {

// c += alpha * op(a) @ op(b), in place (c may be a slice).
void tile_gemm(const torch::Tensor& a, bool trans_a, const torch::Tensor& b, bool trans_b, const torch::Tensor& c,
               double alpha = 1.0);

// op(a) @ op(b), a new tensor.
torch::Tensor tile_product(const torch::Tensor& a, bool trans_a, const torch::Tensor& b, bool trans_b);

}  // namespace loom
