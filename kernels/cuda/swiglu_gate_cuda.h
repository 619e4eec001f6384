// LaCT's fast-weight SwiGLU element-wise passes on the GPU over raw device pointers (float, double):
// the gate H = SiLU(G) ⊙ U, the inner gradient rows X0, X1, X2 and the backward of both, each one
// kernel instead of a dozen LibTorch element-wise kernels. The formulas are kernels/swiglu_gate_math.h,
// the same the CPU loops of runtime/model/swiglu_gate.cpp use. Launched on `stream` (default: the
// legacy default stream, where LibTorch runs unless told otherwise).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/swiglu_gate_math.h"

namespace loom::cuda {

template <typename T>
cudaError_t swiglu_gate_forward(const T* g, const T* u, T* h, int64_t n, cudaStream_t stream = nullptr);

template <typename T>
cudaError_t swiglu_gate_backward(const T* g, const T* u, const T* y, T* dg, T* du, int64_t n,
                                 cudaStream_t stream = nullptr);

// `rows` rows of width w (one rate per row).
template <typename T>
cudaError_t swiglu_gate_gradients(const GateGradientsArgs<T>& a, int64_t rows, int64_t w, cudaStream_t stream = nullptr);

template <typename T>
cudaError_t swiglu_gate_gradients_backward(const GateGradientsBackwardArgs<T>& a, int64_t rows, int64_t w,
                                           cudaStream_t stream = nullptr);

}  // namespace loom::cuda
