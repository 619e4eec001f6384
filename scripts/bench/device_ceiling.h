// The matmul ceiling of the device and dtype of `options`, for the benchmark programs here (which
// also run on GPU machines): n x n products, FLOP/s of the median of 7 after a warm-up. Each timed
// call reads one value back, so GPU work has finished when its clock stops.
#pragma once
#include <torch/torch.h>

#include "launch/machine_ceiling.h"

namespace loom {

inline double matmul_ceiling(const torch::TensorOptions& options, int64_t n) {
  const auto a = torch::randn({n, n}, options), b = torch::randn({n, n}, options);
  auto c = torch::empty({n, n}, options);
  return 2.0 * n * n * n / median_seconds(7, [&] {
           torch::matmul_out(c, a, b);
           c[0][0].item<float>();
         });
}

}  // namespace loom
