// loom summary RUN_DIR: what a run produced, for a person at a terminal: where things are, the
// loss curve as a text chart, throughput, and the latest evaluation; with --plot, the same as a
// picture (run_plot.cpp).
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "launch/commands.h"
#include "launch/run_plot.h"
#include "launch/run_records.h"
#include "runtime/core/error.h"
#include "runtime/train/checkpoint.h"
#include "runtime/train/metrics_log.h"

namespace loom {
namespace {

// Loss per step drawn as `height` rows of `width` columns (each column is the mean of its steps).
void print_loss_chart(const std::vector<nlohmann::json>& steps, int width = 64, int height = 10) {
  std::vector<double> loss;
  for (const auto& s : steps)
    if (s["loss"].is_number()) loss.push_back(s["loss"].get<double>());
  if (loss.empty()) return;
  const int cols = std::min<int>(width, static_cast<int>(loss.size()));
  std::vector<double> col(cols, 0.0);
  for (int c = 0; c < cols; ++c) {
    const size_t b = loss.size() * c / cols, e = std::max(b + 1, loss.size() * (c + 1) / cols);
    for (size_t i = b; i < e; ++i) col[c] += loss[i] / static_cast<double>(e - b);
  }
  const double hi = *std::max_element(col.begin(), col.end()), lo = *std::min_element(col.begin(), col.end());
  std::printf("loss (steps 1-%zu):\n", loss.size());
  for (int row = height - 1; row >= 0; --row) {
    const double level = lo + (hi - lo) * row / height;  // the bottom row shows every column
    std::printf("%8.3f |", lo + (hi - lo) * (row + 1) / height);
    for (int c = 0; c < cols; ++c) std::putchar(col[c] >= level ? '#' : ' ');
    std::putchar('\n');
  }
  std::printf("%8.3f +%s\n", lo, std::string(cols, '-').c_str());
}

void print_eval(const nlohmann::json& e) {
  std::printf("eval at step %ld: loss %.4f, perplexity %.3f", e.value("step", 0L), e.value("loss", 0.0), e.value("perplexity", 0.0));
  if (!e.contains("accuracy")) {
    std::printf("\n");
    return;
  }
  std::printf(", retrieval %.1f%% of %ld\n", 100 * e["accuracy"].get<double>(), e.value("answered", 0L));
  for (const char* group : {"depth", "distance"}) {
    const auto buckets = accuracy_buckets(e, group);
    if (buckets.empty()) continue;
    std::printf("  by %s:", group);
    for (const auto& [bucket, percent] : buckets) std::printf("  %s %.0f%%", bucket.c_str(), percent);
    std::printf("\n");
  }
}

// The median of a number the step records hold (negative when none holds it).
double median_of(const std::vector<nlohmann::json>& steps, const char* key) {
  std::vector<double> values;
  for (const auto& s : steps)
    if (s.contains(key)) values.push_back(s[key].get<double>());
  if (values.empty()) return -1;
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

}  // namespace

int run_summary(const std::string& run_dir, const std::string& plot) {
  const RunRecords r = read_run_records(run_dir);
  std::printf("run dir:     %s\nconfig:      %s/config.resolved.yaml\nmetrics:     %s/metrics.jsonl\n", run_dir.c_str(),
              run_dir.c_str(), run_dir.c_str());
  const std::string latest = resolve_checkpoint("auto", run_dir);
  std::printf("checkpoint:  %s\n", latest.empty() ? "(none)" : latest.c_str());
  if (r.steps.empty()) return 0;
  double seconds = 0;
  for (const auto& s : r.steps) seconds += s.value("step_time_s", 0.0);
  const double mfu = median_of(r.steps, "mfu");
  char mfu_text[32] = "";
  if (mfu >= 0) std::snprintf(mfu_text, sizeof mfu_text, " (MFU %.1f%%)", 100 * mfu);
  std::printf("steps:       %zu in %s, median %s tokens/s%s, peak memory %sB\n", r.steps.size(),
              human_duration(seconds).c_str(), human_count(std::max(0.0, median_of(r.steps, "tokens_per_s"))).c_str(),
              mfu_text, human_count(r.steps.back().value("peak_mem_bytes", 0.0)).c_str());
  print_loss_chart(r.steps);
  if (!r.latest_eval.is_null()) print_eval(r.latest_eval);
  if (!plot.empty()) plot_run(r, run_dir, plot);
  return 0;
}

}  // namespace loom
