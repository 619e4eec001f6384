// The element-wise math of LaCT's fast-weight SwiGLU (runtime/model/swiglu_gate.h), one element at a
// time, shared by the CPU loops and the CUDA kernels so that both compute the same formulas. Free of
// LibTorch and of CUDA headers.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define LOOM_HOST_DEVICE __host__ __device__
#else
#define LOOM_HOST_DEVICE
#endif

namespace loom {

// SiLU(g) = g σ(g) and its first two derivatives, given σ = sigmoid(g) (each caller has its own exp):
//   SiLU' = σ (1 + g (1 - σ)),   SiLU'' = σ (1 - σ) (2 + g (1 - 2σ)).
template <typename T>
struct Silu {
  T act, d1, d2;
};

template <typename T>
LOOM_HOST_DEVICE inline Silu<T> silu_from_sigmoid(T g, T s) {
  return {g * s, s * (T(1) + g * (T(1) - s)), s * (T(1) - s) * (T(2) + g * (T(1) - T(2) * s))};
}

// The backward of the gate H = SiLU(G) ⊙ U for an incoming gradient y: dG = y U SiLU'(G), dU = y SiLU(G).
template <typename T>
struct GateBackward {
  T dg, du;
};

template <typename T>
LOOM_HOST_DEVICE inline GateBackward<T> gate_backward_at(Silu<T> f, T u, T y) {
  return {y * u * f.d1, y * f.act};
}

// The inner loss's gradient rows for G, U, P and a row's rates a0, a1, a2:
//   X0 = a0 P U SiLU'(G),   X1 = a1 SiLU(G) U,   X2 = a2 P SiLU(G).
template <typename T>
struct GateGradients {
  T x0, x1, x2;
};

template <typename T>
LOOM_HOST_DEVICE inline GateGradients<T> gate_gradients_at(Silu<T> f, T u, T p, T a0, T a1, T a2) {
  return {a0 * p * u * f.d1, a1 * f.act * u, a2 * p * f.act};
}

// The backward of gate_gradients_at for incoming gradients y0, y1, y2 of X0, X1, X2: the element's
// share of the rates' gradients (r0, r1, r2, summed over a row by the caller) and dG, dU, dP.
template <typename T>
struct GateGradientsBackward {
  T r0, r1, r2, dg, du, dp;
};

template <typename T>
LOOM_HOST_DEVICE inline GateGradientsBackward<T> gate_gradients_backward_at(Silu<T> f, T u, T p, T a0, T a1, T a2,
                                                                            T y0, T y1, T y2) {
  return {y0 * p * u * f.d1,
          y1 * f.act * u,
          y2 * p * f.act,
          a0 * y0 * p * u * f.d2 + (a1 * y1 * u + a2 * y2 * p) * f.d1,
          a0 * y0 * p * f.d1 + a1 * y1 * f.act,
          a0 * y0 * u * f.d1 + a2 * y2 * f.act};
}

// The tensors of the two passes over rows of width w, rates one per row (row-major, contiguous).
template <typename T>
struct GateGradientsArgs {
  const T *g, *u, *p, *r0, *r1, *r2;
  T *x0, *x1, *x2;
};

template <typename T>
struct GateGradientsBackwardArgs {
  const T *g, *u, *p, *r0, *r1, *r2, *y0, *y1, *y2;
  T *dg, *du, *dp, *dr0, *dr1, *dr2;
};

}  // namespace loom
