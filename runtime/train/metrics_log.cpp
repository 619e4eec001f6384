#include "runtime/train/metrics_log.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <vector>

#include "runtime/core/error.h"
#include "runtime/train/tensorboard_events.h"

namespace loom {

int64_t peak_rss_bytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  return 0;
}

std::string human_count(double v) {
  const char* units[] = {"", "k", "M", "G", "T", "P"};
  int u = 0;
  while (std::fabs(v) >= 1000 && u < 5) {
    v /= 1000;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g%s", v, units[u]);
  return buf;
}

std::string human_duration(double s) {
  char buf[32];
  const auto total = static_cast<int64_t>(std::lround(s));
  if (total >= 3600) std::snprintf(buf, sizeof buf, "%ldh%02ldm", total / 3600, (total % 3600) / 60);
  else if (total >= 60) std::snprintf(buf, sizeof buf, "%ldm%02lds", total / 60, total % 60);
  else std::snprintf(buf, sizeof buf, "%lds", total);
  return buf;
}

namespace {

// mpirun gives every rank a pseudo-terminal even when its own output goes to a file, so
// launch/loom-run says LOOM_PROGRESS=plain when it is not writing to a terminal.
bool plain_progress_requested() {
  const char* mode = std::getenv("LOOM_PROGRESS");
  return mode && std::string(mode) == "plain";
}

}  // namespace

MetricsLog::MetricsLog(const std::string& run_dir, int64_t resume_step, int64_t total_steps, bool progress,
                       bool tensorboard)
    : total_steps_(total_steps), progress_(progress), tty_(isatty(STDOUT_FILENO) && !plain_progress_requested()) {
  const std::string path = run_dir + "/metrics.jsonl";
  std::vector<std::string> kept;
  if (std::filesystem::exists(path)) {
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line)) {
      const auto record = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (!record.is_discarded() && record.value("step", int64_t{0}) <= resume_step) kept.push_back(line);
    }
  }
  out_.open(path, std::ios::trunc);
  check(out_.good(), "cannot write '" + path + "'");
  for (const auto& line : kept) out_ << line << "\n";
  out_.flush();
  // A resumed run starts a new events file; TensorBoard shows a step written twice by its later value.
  if (tensorboard) events_ = std::make_unique<TensorBoardEvents>(run_dir + "/tensorboard");
}

MetricsLog::~MetricsLog() = default;

void MetricsLog::step(const StepMetrics& m, bool show) {
  nlohmann::json line = {{"step", m.step}, {"loss", m.loss}, {"grad_norm", m.grad_norm}, {"lr", m.lr}, {"tokens", m.tokens},
                         {"tokens_per_s", m.tokens_per_s}, {"step_time_s", m.step_time_s}, {"flops_per_s", m.flops_per_s},
                         {"peak_mem_bytes", m.peak_mem_bytes}, {"skipped", m.skipped}};
  if (m.split_sequences >= 0) line["split_sequences"] = m.split_sequences;
  if (m.mfu >= 0) line["mfu"] = m.mfu;
  record(line);
  elapsed_s_ += m.step_time_s;
  ++steps_timed_;
  if (!progress_ || !show) return;
  const double eta = elapsed_s_ / static_cast<double>(steps_timed_) * static_cast<double>(total_steps_ - m.step);
  char mfu[32] = "";
  if (m.mfu >= 0) std::snprintf(mfu, sizeof mfu, " (MFU %.1f%%)", 100 * m.mfu);
  std::printf("%sstep %ld/%ld | loss %.4f | %s tok/s | %sFLOP/s%s | ETA %s%s", tty_ ? "\r\033[K" : "", m.step,
              total_steps_, m.loss, human_count(m.tokens_per_s).c_str(), human_count(m.flops_per_s).c_str(), mfu,
              human_duration(eta).c_str(), m.skipped ? " | SKIPPED (non-finite loss)" : "");
  if (!tty_) std::printf("\n");
  std::fflush(stdout);
}

void MetricsLog::record(const nlohmann::json& record) {
  out_ << record.dump() << "\n";
  out_.flush();
  if (!events_) return;
  const std::string kind = record.value("kind", std::string("train"));
  const int64_t step = record.value("step", int64_t{0});
  for (const auto& [key, value] : record.items())
    if (value.is_number() && key != "step") events_->scalar(kind + "/" + key, value.get<double>(), step);
  events_->flush();
}

void MetricsLog::finish_line() {
  if (progress_ && tty_) std::printf("\n");
}

}  // namespace loom
