#include "kernels/cuda/add_rms_norm_cuda.h"

namespace loom::cuda {
namespace {

constexpr int kThreads = 256;

__device__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __nv_bfloat16 to_bf16(float x) { return __float2bfloat16(x); }  // round to nearest even
// A bfloat16 product or sum as LibTorch forms one: in float32, rounded once.
__device__ __nv_bfloat16 mul(__nv_bfloat16 a, __nv_bfloat16 b) { return to_bf16(to_float(a) * to_float(b)); }
__device__ __nv_bfloat16 add(__nv_bfloat16 a, __nv_bfloat16 b) { return to_bf16(to_float(a) + to_float(b)); }

// The sum of every thread's `value` in the block, returned to all of them.
__device__ float block_sum(float value) {
  __shared__ float warp_sums[kThreads / 32];
  for (int offset = 16; offset > 0; offset /= 2) value += __shfl_down_sync(0xffffffffu, value, offset);
  __syncthreads();  // the previous call's readers are done with warp_sums
  if (threadIdx.x % 32 == 0) warp_sums[threadIdx.x / 32] = value;
  __syncthreads();
  if (threadIdx.x < 32) {
    value = threadIdx.x < kThreads / 32 ? warp_sums[threadIdx.x] : 0.f;
    for (int offset = 16; offset > 0; offset /= 2) value += __shfl_down_sync(0xffffffffu, value, offset);
    if (threadIdx.x == 0) warp_sums[0] = value;
  }
  __syncthreads();
  return warp_sums[0];
}

__global__ void add_rms_norm_kernel(const __nv_bfloat16* __restrict__ h, const __nv_bfloat16* __restrict__ s,
                                    const __nv_bfloat16* __restrict__ weight, __nv_bfloat16* __restrict__ sum,
                                    __nv_bfloat16* __restrict__ normed, float* __restrict__ rstd, int64_t rows,
                                    int64_t cols, float eps) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const int64_t row = r * cols;
    float squares = 0.f;
    // Each thread reads back only the elements it wrote, so the second loop needs no barrier.
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
      const __nv_bfloat16 x = h ? add(h[row + c], s[row + c]) : s[row + c];
      sum[row + c] = x;
      squares += to_float(x) * to_float(x);
    }
    const float inv_rms = rsqrtf(block_sum(squares) / static_cast<float>(cols) + eps);
    if (threadIdx.x == 0) rstd[r] = inv_rms;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
      normed[row + c] = mul(to_bf16(to_float(sum[row + c]) * inv_rms), weight[c]);
  }
}

// dsum = rstd (u - x_hat mean(x_hat u)) with u = dnormed * weight and x_hat = sum * rstd, plus
// dsum_after; each block adds dnormed * x_hat (rounded as the forward's normed was) of its rows
// into its own row of `partials`.
__global__ void add_rms_norm_backward_kernel(const __nv_bfloat16* __restrict__ sum, const float* __restrict__ rstd,
                                             const __nv_bfloat16* __restrict__ weight,
                                             const __nv_bfloat16* __restrict__ dnormed,
                                             const __nv_bfloat16* __restrict__ dsum_after,
                                             __nv_bfloat16* __restrict__ dsum, float* __restrict__ partials,
                                             int64_t rows, int64_t cols) {
  float* mine = partials + blockIdx.x * cols;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) mine[c] = 0.f;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const int64_t row = r * cols;
    const float inv_rms = rstd[r];
    float dot = 0.f;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
      const float x_hat = to_float(sum[row + c]) * inv_rms;
      dot += x_hat * to_float(mul(dnormed[row + c], weight[c]));
      mine[c] += to_float(mul(dnormed[row + c], to_bf16(x_hat)));
    }
    const float mean = block_sum(dot) / static_cast<float>(cols);
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
      const float x_hat = to_float(sum[row + c]) * inv_rms;
      const float u = to_float(mul(dnormed[row + c], weight[c]));
      const __nv_bfloat16 d = to_bf16(inv_rms * (u - x_hat * mean));
      dsum[row + c] = dsum_after ? add(d, dsum_after[row + c]) : d;
    }
  }
}

__global__ void sum_partials_kernel(const float* __restrict__ partials, __nv_bfloat16* __restrict__ dweight,
                                    int64_t cols, int blocks) {
  for (int64_t c = blockIdx.x * blockDim.x + threadIdx.x; c < cols; c += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float total = 0.f;
    for (int b = 0; b < blocks; ++b) total += partials[b * cols + c];
    dweight[c] = to_bf16(total);
  }
}

unsigned grid(int64_t rows, int blocks) { return static_cast<unsigned>(rows < blocks ? rows : blocks); }

}  // namespace

cudaError_t add_rms_norm(const __nv_bfloat16* h, const __nv_bfloat16* s, const __nv_bfloat16* weight, __nv_bfloat16* sum,
                         __nv_bfloat16* normed, float* rstd, int64_t rows, int64_t cols, float eps, int blocks,
                         cudaStream_t stream) {
  if (blocks < 1) return cudaErrorInvalidValue;
  if (rows == 0) return cudaSuccess;
  add_rms_norm_kernel<<<grid(rows, blocks), kThreads, 0, stream>>>(h, s, weight, sum, normed, rstd, rows, cols, eps);
  return cudaGetLastError();
}

size_t add_rms_norm_backward_workspace(int64_t cols, int blocks) {
  return static_cast<size_t>(cols) * static_cast<size_t>(blocks) * sizeof(float);
}

cudaError_t add_rms_norm_backward(const __nv_bfloat16* sum, const float* rstd, const __nv_bfloat16* weight,
                                  const __nv_bfloat16* dnormed, const __nv_bfloat16* dsum_after, __nv_bfloat16* dsum,
                                  __nv_bfloat16* dweight, void* workspace, int64_t rows, int64_t cols, int blocks,
                                  cudaStream_t stream) {
  if (blocks < 1) return cudaErrorInvalidValue;
  // Blocks without rows still zero their partials, so the sum over `blocks` partials is whole.
  auto* partials = static_cast<float*>(workspace);
  add_rms_norm_backward_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(sum, rstd, weight, dnormed,
                                                                                       dsum_after, dsum, partials, rows, cols);
  const cudaError_t launched = cudaGetLastError();
  if (launched != cudaSuccess) return launched;
  const unsigned columns = static_cast<unsigned>((cols + kThreads - 1) / kThreads);
  sum_partials_kernel<<<columns > 0 ? columns : 1, kThreads, 0, stream>>>(partials, dweight, cols, blocks);
  return cudaGetLastError();
}

}  // namespace loom::cuda
