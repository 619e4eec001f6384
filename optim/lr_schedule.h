// Learning rate at a step: linear warm-up to the peak, then cosine decay to peak * min_ratio.
#pragma once
#include <cstdint>

namespace loom {

struct LrSchedule {
  double peak = 1e-3;
  double min_ratio = 0.1;
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;

  double at(int64_t step) const;  // step counts from 0
};

}  // namespace loom
