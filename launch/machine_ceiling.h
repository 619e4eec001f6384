// The machine's own ceilings, measured in the same run as a benchmark so that its numbers can be
// read as fractions of what this machine, at this moment, can do.
#pragma once
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <vector>

namespace loom {

struct MachineCeiling {
  double matmul_flops = 0;    // float32 square matmul, FLOP/s (median)
  double memory_bytes_s = 0;  // large tensor copy, bytes read + written per second (median)
  int cores = 0;
};

MachineCeiling measure_machine_ceiling();

// Median wall time of `reps` calls of fn after `warmups` (one) untimed calls: the machine is shared and noisy.
template <class Fn>
double median_seconds(int reps, Fn&& fn, int warmups = 1) {
  for (int i = 0; i < warmups; ++i) fn();
  std::vector<double> times;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

// The matmul ceiling of the device and dtype of `options` (the benchmark programs of scripts/bench
// also run on GPU machines): n x n products, FLOP/s of the median of 7. Each timed call reads one
// value back, so GPU work has finished when its clock stops.
inline double matmul_ceiling(const torch::TensorOptions& options, int64_t n) {
  const auto a = torch::randn({n, n}, options), b = torch::randn({n, n}, options);
  auto c = torch::empty({n, n}, options);
  return 2.0 * n * n * n / median_seconds(7, [&] {
           torch::matmul_out(c, a, b);
           c[0][0].item<float>();
         });
}

}  // namespace loom
