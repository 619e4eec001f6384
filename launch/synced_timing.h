// Timing on several ranks for the benchmarks: the ranks start together and the slowest rank's time
// is the time of the operation.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "parallel/comm/communicator.h"

namespace loom {

double synced_time(Communicator& world, const std::function<void()>& fn);

// Median over `reps` synced times, after one warm-up call.
double synced_median(Communicator& world, int64_t reps, const std::function<void()>& fn);

double median(std::vector<double> values);

}  // namespace loom
