#include "runtime/model/rope.h"

namespace loom {

torch::Tensor apply_rope(const torch::Tensor& x, const torch::Tensor& positions, double theta) {
  const int64_t half = x.size(-1) / 2;
  // Angles in float64: positions reach 1e5+ where float32 angles lose the low frequencies' phase.
  const auto exponents = torch::arange(half, torch::dtype(torch::kFloat64)) * (2.0 / static_cast<double>(x.size(-1)));
  const auto inv_freq = torch::pow(theta, -exponents);
  const auto angles = positions.to(torch::kFloat64).unsqueeze(1) * inv_freq.unsqueeze(0);  // [N, half]
  // Positions stay on the host (the attention kernels plan their blocks from them); the angles go
  // to x's device.
  const auto cos = angles.cos().to(x.device(), x.scalar_type()).unsqueeze(1);  // [N, 1, half]
  const auto sin = angles.sin().to(x.device(), x.scalar_type()).unsqueeze(1);
  const auto x1 = x.slice(-1, 0, half), x2 = x.slice(-1, half);
  return torch::cat({x1 * cos - x2 * sin, x2 * cos + x1 * sin}, -1);
}

}  // namespace loom
