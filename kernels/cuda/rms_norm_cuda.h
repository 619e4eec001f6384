// RMSNorm on the GPU over raw device pointers (no LibTorch needed, so it builds wherever the CUDA
// toolkit is, even against a CPU-only LibTorch): one block per row, float32 accumulation.
// kernels/rms_norm.h is its reference; TokenWeave's fused AllReduce + residual + RMSNorm builds on it.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace loom::cuda {

// y[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * weight, row-major [rows, cols].
cudaError_t rms_norm(const float* x, const float* weight, float* y, int64_t rows, int64_t cols, float eps,
                     cudaStream_t stream = nullptr);

}  // namespace loom::cuda
