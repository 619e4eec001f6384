// Where a run reports: <run.dir>/metrics.jsonl (one JSON object per step, and eval records), with
// log.tensorboard the same numbers as TensorBoard scalars in <run.dir>/tensorboard/, and a one-line
// progress display on the terminal.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <fstream>
#include <memory>
#include <string>

namespace loom {

struct StepMetrics {
  int64_t step = 0;
  double loss = 0, grad_norm = 0, lr = 0;
  int64_t tokens = 0;
  double tokens_per_s = 0, step_time_s = 0, flops_per_s = 0;
  double mfu = -1;  // flops_per_s over the ranks' peak (log.peak_tflops); negative: not reported
  int64_t peak_mem_bytes = 0;
  bool skipped = false;  // non-finite loss with train.on_nan: skip
  int64_t split_sequences = -1;  // under a placement: documents of the step split over rings (else -1)
};

// Peak resident memory of this process so far (VmHWM), in bytes.
int64_t peak_rss_bytes();

class TensorBoardEvents;

class MetricsLog {
 public:
  // Appends to run_dir/metrics.jsonl, first dropping records after `resume_step` (a resumed run
  // rewrites the steps it replays, so the file never holds two records of one step).
  MetricsLog(const std::string& run_dir, int64_t resume_step, int64_t total_steps, bool progress, bool tensorboard = false);
  ~MetricsLog();

  void step(const StepMetrics& m, bool show);
  // Eval and other records; to TensorBoard every number in it as "<kind>/<key>" ("train/" for steps).
  void record(const nlohmann::json& record);
  void finish_line();                         // ends the progress line before other output

 private:
  std::ofstream out_;
  std::unique_ptr<TensorBoardEvents> events_;
  int64_t total_steps_;
  bool progress_;
  bool tty_;
  double elapsed_s_ = 0;
  int64_t steps_timed_ = 0;
};

std::string human_count(double value);  // 12345 -> "12.3k"
std::string human_duration(double seconds);  // 83 -> "1m23s"

}  // namespace loom
