#include "kernels/cuda/swiglu_gate_cuda.h"

#include <algorithm>

namespace loom::cuda {
namespace {

constexpr int kThreads = 256;

__device__ inline float sigmoid(float g) { return 1.f / (1.f + expf(-g)); }
__device__ inline double sigmoid(double g) { return 1.0 / (1.0 + exp(-g)); }

template <typename T>
__device__ inline Silu<T> silu_at(T g) {
  return silu_from_sigmoid(g, sigmoid(g));
}

// Element-wise passes are memory-bound: a grid-stride loop over enough blocks to fill the device.
unsigned blocks_for(int64_t n) { return static_cast<unsigned>(std::min<int64_t>((n + kThreads - 1) / kThreads, 8192)); }

__device__ inline int64_t first_index() { return blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; }
__device__ inline int64_t grid_stride() { return gridDim.x * static_cast<int64_t>(blockDim.x); }

template <typename T>
__global__ void gate_forward_kernel(const T* __restrict__ g, const T* __restrict__ u, T* __restrict__ h, int64_t n) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) h[i] = silu_at(g[i]).act * u[i];
}

template <typename T>
__global__ void gate_backward_kernel(const T* __restrict__ g, const T* __restrict__ u, const T* __restrict__ y,
                                     T* __restrict__ dg, T* __restrict__ du, int64_t n) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) {
    const GateBackward<T> b = gate_backward_at(silu_at(g[i]), u[i], y[i]);
    dg[i] = b.dg;
    du[i] = b.du;
  }
}

template <typename T>
__global__ void gradients_kernel(GateGradientsArgs<T> a, int64_t n, int64_t w) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) {
    const int64_t row = i / w;
    const GateGradients<T> x = gate_gradients_at(silu_at(a.g[i]), a.u[i], a.p[i], a.r0[row], a.r1[row], a.r2[row]);
    a.x0[i] = x.x0;
    a.x1[i] = x.x1;
    a.x2[i] = x.x2;
  }
}

// Sum of one value over the block (kThreads threads); every thread gets it.
template <typename T>
__device__ T block_sum(T v, T* scratch) {
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
  if (threadIdx.x % 32 == 0) scratch[threadIdx.x / 32] = v;
  __syncthreads();
  T total = 0;
  for (int i = 0; i < kThreads / 32; ++i) total += scratch[i];
  __syncthreads();  // scratch is reused by the next sum
  return total;
}

// One block per row: the element-wise gradients, and the row's sums for the rates' gradients.
template <typename T>
__global__ void gradients_backward_kernel(GateGradientsBackwardArgs<T> a, int64_t w) {
  __shared__ T scratch[kThreads / 32];
  const int64_t row = blockIdx.x;
  const T a0 = a.r0[row], a1 = a.r1[row], a2 = a.r2[row];
  T s0 = 0, s1 = 0, s2 = 0;
  for (int64_t i = row * w + threadIdx.x; i < (row + 1) * w; i += blockDim.x) {
    const GateGradientsBackward<T> b =
        gate_gradients_backward_at(silu_at(a.g[i]), a.u[i], a.p[i], a0, a1, a2, a.y0[i], a.y1[i], a.y2[i]);
    s0 += b.r0;
    s1 += b.r1;
    s2 += b.r2;
    a.dg[i] = b.dg;
    a.du[i] = b.du;
    a.dp[i] = b.dp;
  }
  s0 = block_sum(s0, scratch);
  s1 = block_sum(s1, scratch);
  s2 = block_sum(s2, scratch);
  if (threadIdx.x == 0) {
    a.dr0[row] = s0;
    a.dr1[row] = s1;
    a.dr2[row] = s2;
  }
}

}  // namespace

template <typename T>
cudaError_t swiglu_gate_forward(const T* g, const T* u, T* h, int64_t n, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  gate_forward_kernel<<<blocks_for(n), kThreads, 0, stream>>>(g, u, h, n);
  return cudaGetLastError();
}

template <typename T>
cudaError_t swiglu_gate_backward(const T* g, const T* u, const T* y, T* dg, T* du, int64_t n, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  gate_backward_kernel<<<blocks_for(n), kThreads, 0, stream>>>(g, u, y, dg, du, n);
  return cudaGetLastError();
}

template <typename T>
cudaError_t swiglu_gate_gradients(const GateGradientsArgs<T>& a, int64_t rows, int64_t w, cudaStream_t stream) {
  if (rows * w == 0) return cudaSuccess;
  gradients_kernel<<<blocks_for(rows * w), kThreads, 0, stream>>>(a, rows * w, w);
  return cudaGetLastError();
}

template <typename T>
cudaError_t swiglu_gate_gradients_backward(const GateGradientsBackwardArgs<T>& a, int64_t rows, int64_t w,
                                           cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  gradients_backward_kernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(a, w);
  return cudaGetLastError();
}

#define LOOM_INSTANTIATE(T)                                                                                        \
  template cudaError_t swiglu_gate_forward<T>(const T*, const T*, T*, int64_t, cudaStream_t);                     \
  template cudaError_t swiglu_gate_backward<T>(const T*, const T*, const T*, T*, T*, int64_t, cudaStream_t);      \
  template cudaError_t swiglu_gate_gradients<T>(const GateGradientsArgs<T>&, int64_t, int64_t, cudaStream_t);     \
  template cudaError_t swiglu_gate_gradients_backward<T>(const GateGradientsBackwardArgs<T>&, int64_t, int64_t, \
                                                         cudaStream_t);
LOOM_INSTANTIATE(float)
LOOM_INSTANTIATE(double)
#undef LOOM_INSTANTIATE

}  // namespace loom::cuda
