#include "kernels/rms_norm.h"

#include "runtime/core/precision.h"

namespace loom {

torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps) {
  const auto wide = accumulation_dtype(x.scalar_type());
  const auto xf = x.to(wide);
  const auto normed = xf * torch::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + eps);
  return normed.to(x.scalar_type()) * weight;
}

}  // namespace loom
