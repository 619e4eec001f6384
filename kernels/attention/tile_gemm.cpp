#include "kernels/attention/tile_gemm.h"

#include <algorithm>

#if defined(LOOM_HAVE_DNNL)
#include <oneapi/dnnl/dnnl.h>
#endif

#include "runtime/core/error.h"

namespace loom {
namespace {

torch::Tensor op(const torch::Tensor& t, bool trans) { return trans ? t.transpose(1, 2) : t; }

#if defined(LOOM_HAVE_DNNL)
// Row-major matrices with unit column stride: what sgemm reads through a leading dimension.
bool rows_unit_stride(const torch::Tensor& t) { return t.stride(2) == 1 && t.stride(1) >= std::max<int64_t>(1, t.size(2)); }
#endif

// c = alpha * op(a) @ op(b) + beta * c through oneDNN, where it applies; false where it does not.
bool try_sgemm(const torch::Tensor& a_in, bool trans_a, const torch::Tensor& b_in, bool trans_b, const torch::Tensor& c,
               double alpha, double beta) {
#if defined(LOOM_HAVE_DNNL)
  for (const auto* t : {&a_in, &b_in, &c})
    if (!t->is_cpu() || t->scalar_type() != torch::kFloat32) return false;
  if (!rows_unit_stride(c)) return false;  // written in place: no copy can stand in for it
  const auto a = rows_unit_stride(a_in) ? a_in : a_in.contiguous();
  const auto b = rows_unit_stride(b_in) ? b_in : b_in.contiguous();
  if (!rows_unit_stride(a) || !rows_unit_stride(b)) return false;  // a contiguous [.., .., 1] may keep odd strides
  const int64_t m = c.size(1), n = c.size(2), k = trans_a ? a.size(1) : a.size(2);
  const float* pa = a.data_ptr<float>();
  const float* pb = b.data_ptr<float>();
  float* pc = c.data_ptr<float>();
  for (int64_t h = 0; h < c.size(0); ++h) {
    const dnnl_status_t status =
        dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, static_cast<float>(alpha), pa + h * a.stride(0),
                   a.stride(1), pb + h * b.stride(0), b.stride(1), static_cast<float>(beta), pc + h * c.stride(0), c.stride(1));
    check(status == dnnl_success, "block kernel: oneDNN's sgemm failed with status " + std::to_string(status));
  }
  return true;
#else
  return false;
#endif
}

}  // namespace

void tile_gemm(const torch::Tensor& a, bool trans_a, const torch::Tensor& b, bool trans_b, const torch::Tensor& c,
               double alpha) {
  if (!try_sgemm(a, trans_a, b, trans_b, c, alpha, 1.0)) c.baddbmm_(op(a, trans_a), op(b, trans_b), 1.0, alpha);
}

torch::Tensor tile_product(const torch::Tensor& a, bool trans_a, const torch::Tensor& b, bool trans_b) {
  auto c = torch::empty({a.size(0), trans_a ? a.size(2) : a.size(1), trans_b ? b.size(1) : b.size(2)}, a.options());
  // LibTorch's small-product path multiplies an uninitialised c by beta = 0 (NaN stays NaN), so the
  // fallback is bmm, never baddbmm with beta 0.
  if (try_sgemm(a, trans_a, b, trans_b, c, 1.0, 0.0)) return c;
  return torch::bmm(op(a, trans_a), op(b, trans_b));
}

}  // namespace loom
