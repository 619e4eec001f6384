// The machine's own ceilings, measured in the same run as a benchmark so that its numbers can be
// read as fractions of what this machine, at this moment, can do.
#pragma once
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

// Median wall time of `reps` calls of fn after one warm-up call: the machine is shared and noisy.
template <class Fn>
double median_seconds(int reps, Fn&& fn) {
  fn();
  std::vector<double> times;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

}  // namespace loom
