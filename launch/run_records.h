// What a run dir's metrics.jsonl holds, read back for `loom summary`: the step records, the eval
// records, and the latest evaluation (eval.json from `loom eval` when there is one).
#pragma once
#include <nlohmann/json.hpp>

#include <string>
#include <utility>
#include <vector>

namespace loom {

struct RunRecords {
  std::vector<nlohmann::json> steps, evals;
  nlohmann::json latest_eval;  // null when the run has none
};

RunRecords read_run_records(const std::string& run_dir);

// An eval's accuracy table `group` ("depth", "distance", "length") as (bucket, percent) in the
// buckets' numeric order (JSON keeps them in text order, "1024-2048" before "128-256").
std::vector<std::pair<std::string, double>> accuracy_buckets(const nlohmann::json& eval, const std::string& group);

}  // namespace loom
