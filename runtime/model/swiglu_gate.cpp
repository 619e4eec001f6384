#include "runtime/model/swiglu_gate.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>

#include "kernels/swiglu_gate_math.h"
#include "kernels/vector_exp.h"
#include "runtime/core/error.h"

#ifdef LOOM_CUDA_KERNELS
#include "kernels/cuda/swiglu_gate_cuda.h"
#endif

namespace loom {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

template <typename T>
inline Silu<T> silu_at(T g) {
  return silu_from_sigmoid(g, T(1) / (T(1) + vector_exp(-g)));
}

template <typename T>
LOOM_VECTOR_CLONES void gate_forward(const T* g, const T* u, T* out, int64_t begin, int64_t end) {
#pragma omp simd
  for (int64_t i = begin; i < end; ++i) out[i] = silu_at(g[i]).act * u[i];
}

template <typename T>
LOOM_VECTOR_CLONES void gate_backward(const T* g, const T* u, const T* y, T* dg, T* du, int64_t begin, int64_t end) {
#pragma omp simd
  for (int64_t i = begin; i < end; ++i) {
    const GateBackward<T> b = gate_backward_at(silu_at(g[i]), u[i], y[i]);
    dg[i] = b.dg;
    du[i] = b.du;
  }
}

// Rows [begin, end) of width w.
template <typename T>
LOOM_VECTOR_CLONES void gradients_forward(const GateGradientsArgs<T>& a, int64_t w, int64_t begin, int64_t end) {
  const T *g = a.g, *u = a.u, *p = a.p;
  T *x0 = a.x0, *x1 = a.x1, *x2 = a.x2;
  for (int64_t row = begin; row < end; ++row) {
    const T a0 = a.r0[row], a1 = a.r1[row], a2 = a.r2[row];
#pragma omp simd
    for (int64_t i = row * w; i < (row + 1) * w; ++i) {
      const GateGradients<T> x = gate_gradients_at(silu_at(g[i]), u[i], p[i], a0, a1, a2);
      x0[i] = x.x0;
      x1[i] = x.x1;
      x2[i] = x.x2;
    }
  }
}

template <typename T>
LOOM_VECTOR_CLONES void gradients_backward(const GateGradientsBackwardArgs<T>& b, int64_t w, int64_t begin, int64_t end) {
  for (int64_t row = begin; row < end; ++row) {
    const int64_t at = row * w;
    const T *g = b.g + at, *u = b.u + at, *p = b.p + at, *y0 = b.y0 + at, *y1 = b.y1 + at, *y2 = b.y2 + at;
    T *dg = b.dg + at, *du = b.du + at, *dp = b.dp + at;
    const T a0 = b.r0[row], a1 = b.r1[row], a2 = b.r2[row];
    T s0 = 0, s1 = 0, s2 = 0;
#pragma omp simd reduction(+ : s0, s1, s2)
    for (int64_t i = 0; i < w; ++i) {
      const GateGradientsBackward<T> e = gate_gradients_backward_at(silu_at(g[i]), u[i], p[i], a0, a1, a2, y0[i], y1[i], y2[i]);
      s0 += e.r0;
      s1 += e.r1;
      s2 += e.r2;
      dg[i] = e.dg;
      du[i] = e.du;
      dp[i] = e.dp;
    }
    b.dr0[row] = s0;
    b.dr1[row] = s1;
    b.dr2[row] = s2;
  }
}

// Splits [0, count) over the intra-op threads in pieces of about 16K elements.
template <class Fn>
void in_parallel(int64_t count, int64_t width, const Fn& fn) {
  at::parallel_for(0, count, std::max<int64_t>(1, 16384 / width), fn);
}

#ifdef LOOM_CUDA_KERNELS
constexpr bool kCudaKernels = true;

void cuda_check(cudaError_t e) { check(e == cudaSuccess, std::string("fast-weight SwiGLU kernel: ") + cudaGetErrorString(e)); }

// Inside a dispatch lambda: on a CUDA tensor, run the kernel call on its device and return.
#define LOOM_ON_CUDA(t, call)                    \
  if ((t).is_cuda()) {                           \
    const c10::DeviceGuard guard((t).device()); \
    return cuda_check(call);                     \
  }
#else
constexpr bool kCudaKernels = false;
#define LOOM_ON_CUDA(t, call)
#endif

std::atomic<bool> fusion_on{true};

// The fused passes run on CPU tensors, and on CUDA tensors where Loom was built with its kernels.
bool fusable(const std::vector<torch::Tensor>& ts) {
  if (!fusion_on.load()) return false;
  const auto device = ts[0].device().type();
  if (device != torch::kCPU && !(device == torch::kCUDA && kCudaKernels)) return false;
  for (const auto& t : ts)
    if (t.device() != ts[0].device() || t.scalar_type() != ts[0].scalar_type()) return false;
  return ts[0].scalar_type() == torch::kFloat32 || ts[0].scalar_type() == torch::kFloat64;
}

torch::Tensor or_zeros(const torch::Tensor& grad, const torch::Tensor& like) {
  return grad.defined() ? grad.contiguous() : torch::zeros_like(like);
}

struct GateFn : torch::autograd::Function<GateFn> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& g_in, const torch::Tensor& u_in) {
    const auto g = g_in.contiguous(), u = u_in.contiguous();
    auto out = torch::empty_like(g);
    AT_DISPATCH_FLOATING_TYPES(g.scalar_type(), "swiglu_gate", [&] {
      const scalar_t *gp = g.data_ptr<scalar_t>(), *up = u.data_ptr<scalar_t>();
      scalar_t* op = out.data_ptr<scalar_t>();
      LOOM_ON_CUDA(g, cuda::swiglu_gate_forward(gp, up, op, g.numel()));
      in_parallel(g.numel(), 1, [&](int64_t begin, int64_t end) { gate_forward(gp, up, op, begin, end); });
    });
    ctx->save_for_backward({g, u});
    return out;
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto &g = saved[0], &u = saved[1];
    const auto y = or_zeros(grads[0], g);
    auto dg = torch::empty_like(g), du = torch::empty_like(u);
    AT_DISPATCH_FLOATING_TYPES(g.scalar_type(), "swiglu_gate_backward", [&] {
      const scalar_t *gp = g.data_ptr<scalar_t>(), *up = u.data_ptr<scalar_t>(), *yp = y.data_ptr<scalar_t>();
      scalar_t *dgp = dg.data_ptr<scalar_t>(), *dup = du.data_ptr<scalar_t>();
      LOOM_ON_CUDA(g, cuda::swiglu_gate_backward(gp, up, yp, dgp, dup, g.numel()));
      in_parallel(g.numel(), 1, [&](int64_t begin, int64_t end) { gate_backward(gp, up, yp, dgp, dup, begin, end); });
    });
    return {dg, du};
  }
};

struct GradientsFn : torch::autograd::Function<GradientsFn> {
  static tensor_list forward(AutogradContext* ctx, const torch::Tensor& g_in, const torch::Tensor& u_in,
                             const torch::Tensor& p_in, const torch::Tensor& lr0, const torch::Tensor& lr1,
                             const torch::Tensor& lr2) {
    const auto g = g_in.contiguous(), u = u_in.contiguous(), p = p_in.contiguous();
    const auto r0 = lr0.contiguous(), r1 = lr1.contiguous(), r2 = lr2.contiguous();
    auto x0 = torch::empty_like(g), x1 = torch::empty_like(g), x2 = torch::empty_like(g);
    const int64_t w = g.size(-1);
    AT_DISPATCH_FLOATING_TYPES(g.scalar_type(), "swiglu_gate_gradients", [&] {
      using T = scalar_t;
      const GateGradientsArgs<T> a{g.data_ptr<T>(),  u.data_ptr<T>(),  p.data_ptr<T>(),  r0.data_ptr<T>(), r1.data_ptr<T>(),
                                   r2.data_ptr<T>(), x0.data_ptr<T>(), x1.data_ptr<T>(), x2.data_ptr<T>()};
      LOOM_ON_CUDA(g, cuda::swiglu_gate_gradients(a, r0.numel(), w));
      in_parallel(r0.numel(), w, [&](int64_t begin, int64_t end) { gradients_forward(a, w, begin, end); });
    });
    ctx->save_for_backward({g, u, p, r0, r1, r2});
    return {x0, x1, x2};
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto s = ctx->get_saved_variables();
    const auto &g = s[0], &r0 = s[3];
    const auto y0 = or_zeros(grads[0], g), y1 = or_zeros(grads[1], g), y2 = or_zeros(grads[2], g);
    auto dg = torch::empty_like(g), du = torch::empty_like(g), dp = torch::empty_like(g);
    auto dr0 = torch::empty_like(r0), dr1 = torch::empty_like(r0), dr2 = torch::empty_like(r0);
    const int64_t w = g.size(-1);
    AT_DISPATCH_FLOATING_TYPES(g.scalar_type(), "swiglu_gate_gradients_backward", [&] {
      using T = scalar_t;
      const GateGradientsBackwardArgs<T> b{s[0].data_ptr<T>(), s[1].data_ptr<T>(), s[2].data_ptr<T>(), s[3].data_ptr<T>(),
                                   s[4].data_ptr<T>(), s[5].data_ptr<T>(), y0.data_ptr<T>(),  y1.data_ptr<T>(),
                                   y2.data_ptr<T>(),   dg.data_ptr<T>(),   du.data_ptr<T>(),   dp.data_ptr<T>(),
                                   dr0.data_ptr<T>(),  dr1.data_ptr<T>(),  dr2.data_ptr<T>()};
      LOOM_ON_CUDA(g, cuda::swiglu_gate_gradients_backward(b, r0.numel(), w));
      in_parallel(r0.numel(), w, [&](int64_t begin, int64_t end) { gradients_backward(b, w, begin, end); });
    });
    return {dg, du, dp, dr0, dr1, dr2};
  }
};

}  // namespace

void set_swiglu_fusion(bool on) { fusion_on.store(on); }

torch::Tensor swiglu_gate(const torch::Tensor& g, const torch::Tensor& u) {
  return fusable({g, u}) ? GateFn::apply(g, u) : composite::swiglu_gate(g, u);
}

std::array<torch::Tensor, 3> swiglu_gate_gradients(const torch::Tensor& g, const torch::Tensor& u, const torch::Tensor& p,
                                                   const torch::Tensor& lr0, const torch::Tensor& lr1, const torch::Tensor& lr2) {
  if (!fusable({g, u, p, lr0, lr1, lr2})) return composite::swiglu_gate_gradients(g, u, p, lr0, lr1, lr2);
  const auto x = GradientsFn::apply(g, u, p, lr0, lr1, lr2);
  return {x[0], x[1], x[2]};
}

namespace composite {

torch::Tensor swiglu_gate(const torch::Tensor& g, const torch::Tensor& u) { return torch::silu(g) * u; }

std::array<torch::Tensor, 3> swiglu_gate_gradients(const torch::Tensor& g, const torch::Tensor& u, const torch::Tensor& p,
                                                   const torch::Tensor& lr0, const torch::Tensor& lr1, const torch::Tensor& lr2) {
  const auto s = torch::sigmoid(g), act = g * s;
  const auto rate = [](const torch::Tensor& lr) { return lr.unsqueeze(-1); };
  return {p * u * (s * (1 + g * (1 - s))) * rate(lr0), act * u * rate(lr1), p * act * rate(lr2)};
}

}  // namespace composite
}  // namespace loom
