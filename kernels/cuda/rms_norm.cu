#include "kernels/cuda/rms_norm_cuda.h"

namespace loom::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void rms_norm_kernel(const float* __restrict__ x, const float* __restrict__ weight, float* __restrict__ y,
                                int64_t cols, float eps) {
  const float* row = x + blockIdx.x * cols;
  float* out = y + blockIdx.x * cols;
  float sum = 0.f;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) sum += row[c] * row[c];
  // Warp shuffles, then one value per warp through shared memory.
  for (int offset = 16; offset > 0; offset /= 2) sum += __shfl_down_sync(0xffffffffu, sum, offset);
  __shared__ float warp_sums[kThreads / 32];
  if (threadIdx.x % 32 == 0) warp_sums[threadIdx.x / 32] = sum;
  __syncthreads();
  if (threadIdx.x < 32) {
    sum = threadIdx.x < kThreads / 32 ? warp_sums[threadIdx.x] : 0.f;
    for (int offset = 16; offset > 0; offset /= 2) sum += __shfl_down_sync(0xffffffffu, sum, offset);
    if (threadIdx.x == 0) warp_sums[0] = rsqrtf(sum / static_cast<float>(cols) + eps);
  }
  __syncthreads();
  const float inv_rms = warp_sums[0];
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) out[c] = row[c] * inv_rms * weight[c];
}

}  // namespace

cudaError_t rms_norm(const float* x, const float* weight, float* y, int64_t rows, int64_t cols, float eps,
                     cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  rms_norm_kernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(x, weight, y, cols, eps);
  return cudaGetLastError();
}

}  // namespace loom::cuda
