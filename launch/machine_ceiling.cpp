#include "launch/machine_ceiling.h"

#include <torch/torch.h>

#include <thread>

namespace loom {

MachineCeiling measure_machine_ceiling() {
  MachineCeiling c;
  c.matmul_flops = matmul_ceiling(torch::dtype(torch::kFloat32), 2048);
  const auto src = torch::randn({64 << 20});  // 256 MiB of float32
  auto dst = torch::empty_like(src);
  const double t_copy = median_seconds(5, [&] { dst.copy_(src); });
  c.memory_bytes_s = 2.0 * static_cast<double>(src.nbytes()) / t_copy;
  c.cores = static_cast<int>(std::thread::hardware_concurrency());
  return c;
}

}  // namespace loom
