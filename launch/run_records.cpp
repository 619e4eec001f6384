#include "launch/run_records.h"

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "runtime/core/error.h"

namespace loom {

RunRecords read_run_records(const std::string& run_dir) {
  const std::string path = run_dir + "/metrics.jsonl";
  std::ifstream in(path);
  check(in.good(), "no metrics at '" + path + "': is this a run dir?");
  RunRecords r;
  std::string line;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded()) continue;
    (j.value("kind", "") == "eval" ? r.evals : r.steps).push_back(j);
  }
  const std::string eval_json = run_dir + "/eval.json";
  if (std::filesystem::exists(eval_json)) r.latest_eval = nlohmann::json::parse(std::ifstream(eval_json));
  else if (!r.evals.empty()) r.latest_eval = r.evals.back();
  return r;
}

std::vector<std::pair<std::string, double>> accuracy_buckets(const nlohmann::json& eval, const std::string& group) {
  const std::string key = "accuracy_by_" + group;
  std::vector<std::pair<long, std::pair<std::string, double>>> sorted;
  if (!eval.contains(key)) return {};
  for (const auto& [bucket, v] : eval[key].items())
    sorted.push_back({std::stol(bucket), {bucket, 100.0 * v["correct"].get<double>() / std::max(1.0, v["total"].get<double>())}});
  std::sort(sorted.begin(), sorted.end());
  std::vector<std::pair<std::string, double>> out;
  for (const auto& [from, b] : sorted) out.push_back(b);
  return out;
}

}  // namespace loom
