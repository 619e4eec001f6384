#include "runtime/model/swiglu_gate.h"

#include <ATen/Parallel.h>

#include <algorithm>

#include "kernels/vector_exp.h"

namespace loom {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

// SiLU(g) = g σ(g) and its first two derivatives, from one exp:
//   SiLU' = σ (1 + g (1 - σ)),   SiLU'' = σ (1 - σ) (2 + g (1 - 2σ)).
template <typename T>
struct Silu {
  T act, d1, d2;
};

template <typename T>
inline Silu<T> silu_at(T g) {
  const T s = T(1) / (T(1) + vector_exp(-g));
  return {g * s, s * (T(1) + g * (T(1) - s)), s * (T(1) - s) * (T(2) + g * (T(1) - T(2) * s))};
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
    const Silu<T> f = silu_at(g[i]);
    dg[i] = y[i] * u[i] * f.d1;
    du[i] = y[i] * f.act;
  }
}

// Rows [begin, end) of width w; rates one per row.
template <typename T>
LOOM_VECTOR_CLONES void gradients_forward(const T* g, const T* u, const T* p, const T* r0, const T* r1, const T* r2, T* x0,
                                          T* x1, T* x2, int64_t w, int64_t begin, int64_t end) {
  for (int64_t row = begin; row < end; ++row) {
    const T a0 = r0[row], a1 = r1[row], a2 = r2[row];
#pragma omp simd
    for (int64_t i = row * w; i < (row + 1) * w; ++i) {
      const Silu<T> f = silu_at(g[i]);
      x0[i] = a0 * p[i] * u[i] * f.d1;
      x1[i] = a1 * f.act * u[i];
      x2[i] = a2 * p[i] * f.act;
    }
  }
}

// The backward of gradients_forward for incoming gradients y0, y1, y2 (zero where absent).
template <typename T>
struct GradientsBackward {
  const T *g, *u, *p, *r0, *r1, *r2, *y0, *y1, *y2;
  T *dg, *du, *dp, *dr0, *dr1, *dr2;
};

template <typename T>
LOOM_VECTOR_CLONES void gradients_backward(const GradientsBackward<T>& b, int64_t w, int64_t begin, int64_t end) {
  for (int64_t row = begin; row < end; ++row) {
    const int64_t at = row * w;
    const T *g = b.g + at, *u = b.u + at, *p = b.p + at, *y0 = b.y0 + at, *y1 = b.y1 + at, *y2 = b.y2 + at;
    T *dg = b.dg + at, *du = b.du + at, *dp = b.dp + at;
    const T a0 = b.r0[row], a1 = b.r1[row], a2 = b.r2[row];
    T s0 = 0, s1 = 0, s2 = 0;
#pragma omp simd reduction(+ : s0, s1, s2)
    for (int64_t i = 0; i < w; ++i) {
      const Silu<T> f = silu_at(g[i]);
      s0 += y0[i] * p[i] * u[i] * f.d1;
      s1 += y1[i] * f.act * u[i];
      s2 += y2[i] * p[i] * f.act;
      dp[i] = a0 * y0[i] * u[i] * f.d1 + a2 * y2[i] * f.act;
      du[i] = a0 * y0[i] * p[i] * f.d1 + a1 * y1[i] * f.act;
      dg[i] = a0 * y0[i] * p[i] * u[i] * f.d2 + (a1 * y1[i] * u[i] + a2 * y2[i] * p[i]) * f.d1;
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

bool fusable(const std::vector<torch::Tensor>& ts) {
  for (const auto& t : ts)
    if (!t.is_cpu() || t.scalar_type() != ts[0].scalar_type()) return false;
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
      in_parallel(g.numel(), 1, [&](int64_t begin, int64_t end) {
        gate_forward(g.data_ptr<scalar_t>(), u.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), begin, end);
      });
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
      in_parallel(g.numel(), 1, [&](int64_t begin, int64_t end) {
        gate_backward(g.data_ptr<scalar_t>(), u.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(), dg.data_ptr<scalar_t>(),
                      du.data_ptr<scalar_t>(), begin, end);
      });
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
      in_parallel(r0.numel(), w, [&](int64_t begin, int64_t end) {
        gradients_forward(g.data_ptr<scalar_t>(), u.data_ptr<scalar_t>(), p.data_ptr<scalar_t>(), r0.data_ptr<scalar_t>(),
                          r1.data_ptr<scalar_t>(), r2.data_ptr<scalar_t>(), x0.data_ptr<scalar_t>(),
                          x1.data_ptr<scalar_t>(), x2.data_ptr<scalar_t>(), w, begin, end);
      });
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
      const GradientsBackward<T> b{s[0].data_ptr<T>(), s[1].data_ptr<T>(), s[2].data_ptr<T>(), s[3].data_ptr<T>(),
                                   s[4].data_ptr<T>(), s[5].data_ptr<T>(), y0.data_ptr<T>(),  y1.data_ptr<T>(),
                                   y2.data_ptr<T>(),   dg.data_ptr<T>(),   du.data_ptr<T>(),   dp.data_ptr<T>(),
                                   dr0.data_ptr<T>(),  dr1.data_ptr<T>(),  dr2.data_ptr<T>()};
      in_parallel(r0.numel(), w, [&](int64_t begin, int64_t end) { gradients_backward(b, w, begin, end); });
    });
    return {dg, du, dp, dr0, dr1, dr2};
  }
};

}  // namespace

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
