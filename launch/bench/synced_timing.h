// Timing on several ranks for the benchmarks: the ranks start together and the slowest rank's time
// is the time of the operation.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "parallel/comm/communicator.h"

namespace loom {

double synced_time(Communicator& world, const std::function<void()>& fn);

// The largest of every rank's `value` (collective over `world`).
double max_over_ranks(Communicator& world, double value);

// Median over `reps` synced times, after `warmups` (one) untimed calls.
double synced_median(Communicator& world, int64_t reps, const std::function<void()>& fn, int64_t warmups = 1);

double median(std::vector<double> values);

}  // namespace loom
