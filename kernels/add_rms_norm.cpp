#include "kernels/add_rms_norm.h"

#include "runtime/core/precision.h"

namespace loom {

AddNorm add_rms_norm(const torch::Tensor& h, const torch::Tensor& s, const torch::Tensor& weight, double eps) {
  AddNorm r;
  r.sum = h.defined() ? h + s : s.clone();
  const auto x = r.sum.to(accumulation_dtype(r.sum.scalar_type()));
  r.rstd = torch::rsqrt(x.pow(2).mean(-1, /*keepdim=*/true) + eps);
  r.normed = (x * r.rstd).to(r.sum.scalar_type()) * weight;
  return r;
}

AddNormGrads add_rms_norm_backward(const AddNorm& f, const torch::Tensor& weight, const torch::Tensor& dnormed,
                                   const torch::Tensor& dsum_after) {
  const auto wide = f.rstd.scalar_type();
  const auto x_hat = f.sum.to(wide) * f.rstd;
  // normed = cast(x_hat) * weight: the weight's gradient sees the cast x_hat, x_hat's sees dnormed * weight.
  AddNormGrads g;
  g.dweight = (dnormed * x_hat.to(f.sum.scalar_type())).sum(0);
  const auto u = (dnormed * weight).to(wide);
  // d x_hat / d x = rstd (I - x_hat x_hatᵀ / D): dx = rstd (u - x_hat mean(x_hat u)).
  auto dsum = (f.rstd * (u - x_hat * (x_hat * u).mean(-1, /*keepdim=*/true))).to(f.sum.scalar_type());
  if (dsum_after.defined()) dsum = dsum + dsum_after;
  g.dsum = dsum;
  return g;
}

}  // namespace loom
