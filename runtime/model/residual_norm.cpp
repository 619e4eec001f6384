#include "runtime/model/residual_norm.h"

#include "kernels/rms_norm.h"

namespace loom {

RMSNormImpl::RMSNormImpl(int64_t dim, double eps) : eps_(eps) {
  weight = register_parameter("weight", torch::ones({dim}));
}

torch::Tensor RMSNormImpl::forward(const torch::Tensor& x) { return rms_norm(x, weight, eps_); }

Residual LocalResidualNorm::apply(const torch::Tensor& h, const torch::Tensor& delta, RMSNormImpl& norm) {
  const auto sum = h.defined() ? h + delta : delta;
  return {sum, norm.forward(sum)};
}

}  // namespace loom
