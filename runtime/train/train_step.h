// One optimizer step over train.tokens_per_step tokens: this rank's micro-batches, each
// backpropagated by the run's strategy, the gradients reduced over the replicas, clipped, and the
// optimizer stepped (unless the loss is not finite: stop or skip, train.on_nan).
#pragma once
#include <cstdint>

#include "runtime/train/metrics_log.h"
#include "runtime/train/training_run.h"

namespace loom {

// `step` counts from 0. `log` (rank 0 only) ends its progress line before a failure is reported.
StepMetrics train_step(TrainingRun& run, int64_t step, MetricsLog* log);

}  // namespace loom
