#include "launch/bench/synced_timing.h"

#include <algorithm>
#include <chrono>

namespace loom {

double synced_time(Communicator& world, const std::function<void()>& fn) {
  barrier_now(world);
  const auto t0 = std::chrono::steady_clock::now();
  fn();
  return max_over_ranks(world, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
}

double max_over_ranks(Communicator& world, double value) {
  auto t = torch::tensor({value}, torch::kFloat64);
  all_reduce_now(world, t, ReduceOp::kMax);
  return t.item<double>();
}

double synced_median(Communicator& world, int64_t reps, const std::function<void()>& fn, int64_t warmups) {
  for (int64_t i = 0; i < warmups; ++i) fn();
  std::vector<double> times;
  for (int64_t i = 0; i < reps; ++i) times.push_back(synced_time(world, fn));
  return median(times);
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

}  // namespace loom
