#include "launch/machine_ceiling.h"

#include <torch/torch.h>

#include <thread>

namespace loom {

MachineCeiling measure_machine_ceiling() {
  MachineCeiling c;
  const int64_t n = 2048;
  const auto a = torch::randn({n, n}), b = torch::randn({n, n});
  auto out = torch::empty({n, n});
  const double t_mm = median_seconds(7, [&] { torch::matmul_out(out, a, b); });
  c.matmul_flops = 2.0 * n * n * n / t_mm;
  const auto src = torch::randn({64 << 20});  // 256 MiB of float32
  auto dst = torch::empty_like(src);
  const double t_copy = median_seconds(5, [&] { dst.copy_(src); });
  c.memory_bytes_s = 2.0 * static_cast<double>(src.nbytes()) / t_copy;
  c.cores = static_cast<int>(std::thread::hardware_concurrency());
  return c;
}

}  // namespace loom
