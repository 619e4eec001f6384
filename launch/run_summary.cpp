// loom summary RUN_DIR: what a run produced, for a person at a terminal: where things are, the
// loss curve as a text chart, throughput, and the latest evaluation.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "launch/commands.h"
#include "runtime/core/error.h"
#include "runtime/train/checkpoint.h"
#include "runtime/train/metrics_log.h"

namespace loom {
namespace {

struct RunRecords {
  std::vector<nlohmann::json> steps, evals;
};

RunRecords read_records(const std::string& path) {
  std::ifstream in(path);
  check(in.good(), "no metrics at '" + path + "': is this a run dir?");
  RunRecords r;
  std::string line;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded()) continue;
    (j.value("kind", "") == "eval" ? r.evals : r.steps).push_back(j);
  }
  return r;
}

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
    const std::string key = std::string("accuracy_by_") + group;
    if (!e.contains(key)) continue;
    // JSON keeps its keys in text order ("1024-2048" before "128-256"): print them by their number.
    std::vector<std::pair<long, std::string>> line;
    for (const auto& [bucket, v] : e[key].items()) {
      char text[64];
      std::snprintf(text, sizeof text, "  %s %.0f%%", bucket.c_str(),
                    100.0 * v["correct"].get<double>() / std::max(1.0, v["total"].get<double>()));
      line.emplace_back(std::stol(bucket), text);
    }
    std::sort(line.begin(), line.end());
    std::printf("  by %s:", group);
    for (const auto& [from, text] : line) std::printf("%s", text.c_str());
    std::printf("\n");
  }
}

}  // namespace

int run_summary(const std::string& run_dir) {
  const RunRecords r = read_records(run_dir + "/metrics.jsonl");
  std::printf("run dir:     %s\nconfig:      %s/config.resolved.yaml\nmetrics:     %s/metrics.jsonl\n", run_dir.c_str(),
              run_dir.c_str(), run_dir.c_str());
  const std::string latest = resolve_checkpoint("auto", run_dir);
  std::printf("checkpoint:  %s\n", latest.empty() ? "(none)" : latest.c_str());
  if (r.steps.empty()) return 0;
  std::vector<double> tps;
  double seconds = 0;
  for (const auto& s : r.steps) {
    tps.push_back(s.value("tokens_per_s", 0.0));
    seconds += s.value("step_time_s", 0.0);
  }
  std::sort(tps.begin(), tps.end());
  std::printf("steps:       %zu in %s, median %s tokens/s, peak memory %sB\n", r.steps.size(), human_duration(seconds).c_str(),
              human_count(tps[tps.size() / 2]).c_str(), human_count(r.steps.back().value("peak_mem_bytes", 0.0)).c_str());
  print_loss_chart(r.steps);
  const std::string eval_json = run_dir + "/eval.json";
  if (std::filesystem::exists(eval_json)) print_eval(nlohmann::json::parse(std::ifstream(eval_json)));
  else if (!r.evals.empty()) print_eval(r.evals.back());
  return 0;
}

}  // namespace loom
