// The residual boundary of tensor parallelism with sequence-sharded norms on the GPU, over raw
// device pointers (no LibTorch needed): sum = h + s, normed = RMSNorm(sum) * weight, in bfloat16
// with float32 statistics, and its backward. Each rounds to bfloat16 where kernels/add_rms_norm.h,
// its reference, does, so the two differ only in the order of float32 sums.
//
// Every kernel takes its block count: TokenWeave (Gond et al., arXiv 2505.11329) gives
// the fused reduce + add + norm 2-8 SMs and leaves the rest to the overlapped computation. Rows are
// dealt to the blocks in turn.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace loom::cuda {

// Row-major [rows, cols]; h may be null (the embedding's boundary: sum = s). rstd: [rows], the
// float32 1 / sqrt(mean(sum^2) + eps) the backward needs.
cudaError_t add_rms_norm(const __nv_bfloat16* h, const __nv_bfloat16* s, const __nv_bfloat16* weight, __nv_bfloat16* sum,
                         __nv_bfloat16* normed, float* rstd, int64_t rows, int64_t cols, float eps, int blocks,
                         cudaStream_t stream = nullptr);

// Bytes of device workspace add_rms_norm_backward needs: each block's float32 partial of dweight.
size_t add_rms_norm_backward_workspace(int64_t cols, int blocks);

// dnormed: the gradient of `normed`; dsum_after: what later layers sent into `sum` directly (null:
// none). dsum [rows, cols] is the gradient of sum (and of h and s); dweight [cols] is summed over the
// rows, deterministically (per-block partials, then one sum over the blocks in block order).
cudaError_t add_rms_norm_backward(const __nv_bfloat16* sum, const float* rstd, const __nv_bfloat16* weight,
                                  const __nv_bfloat16* dnormed, const __nv_bfloat16* dsum_after, __nv_bfloat16* dsum,
                                  __nv_bfloat16* dweight, void* workspace, int64_t rows, int64_t cols, int blocks,
                                  cudaStream_t stream = nullptr);

}  // namespace loom::cuda
