// The relative error the tests bound, shared by the unit, mpi and gpu test binaries (header-only:
// the gpu binary links none of the test helpers' libraries).
#pragma once
#include <torch/torch.h>

#include <algorithm>

namespace loom::test {

// max |a - b| / max(max |b|, floor), in float64 on the host (a and b may live on any device). A
// floor of the inputs' scale keeps a reference that is zero up to rounding from dividing noise by
// noise.
inline double relative_error(const torch::Tensor& a, const torch::Tensor& b, double floor = 1e-30) {
  const auto a64 = a.detach().cpu().to(torch::kFloat64), b64 = b.detach().cpu().to(torch::kFloat64);
  const double scale = std::max(b64.abs().max().item<double>(), floor);
  return (a64 - b64).abs().max().item<double>() / scale;
}

}  // namespace loom::test
