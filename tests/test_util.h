// Shared helpers for Loom's tests: scratch folders, tiny configs and datasets, running the loom
// executable as a real subprocess.
#pragma once
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "runtime/core/config.h"
#include "runtime/core/error.h"
#include "runtime/model/llama.h"
#include "tests/relative_error.h"

namespace loom::test {

// A fresh empty folder under the system temp dir, removed when the test ends.
class ScratchDir {
 public:
  ScratchDir();
  ~ScratchDir();
  std::string path(const std::string& name = "") const;

 private:
  std::string root_;
};

// A 2-layer GQA model small enough for finite differences; weights large enough (std 0.2) that
// every path carries gradient signal.
ModelConfig tiny_model(bool tied = false);
// A module built from `c` (Llama, LactLayer, ...) in float64, initialised from a fixed seed.
template <class Module>
Module float64_module(const ModelConfig& c) {
  torch::manual_seed(11);
  Module m(c);
  m->to(torch::kFloat64);
  return m;
}
inline Llama float64_model(const ModelConfig& c) { return float64_module<Llama>(c); }

// A tiny float64 model and training setup over `data_path`, writing to `run_dir`.
Config tiny_config(const std::string& data_path, const std::string& run_dir);

// Writes a small passkey dataset (documents of 150-400 bytes) and returns its path.
std::string write_tiny_passkey(const ScratchDir& dir, int64_t docs = 120);

struct ProcessResult {
  int exit_code;
  std::string output;  // stdout and stderr together
  double seconds;      // wall time
};
// Runs a shell command and collects what it prints.
ProcessResult run_command(const std::string& command);
// Runs the loom executable with `args` (shell-quoted by the caller) and optional environment prefix.
ProcessResult run_loom(const std::string& args, const std::string& env = "");
// The same on `ranks` MPI ranks through launch/loom-run, one thread per rank.
ProcessResult run_loom_ranks(int ranks, const std::string& args, const std::string& env = "");

// The message of the loom::Error that `fn` throws; fails the test if it throws none.
template <class Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a loom::Error";
  return "";
}

// The per-step records of <run_dir>/metrics.jsonl (evaluation records left out).
std::vector<nlohmann::json> step_records(const std::string& run_dir);

// Intra-op threads for one test; the test binary otherwise runs on one (tests/test_main.cpp).
class IntraOpThreads {
 public:
  explicit IntraOpThreads(int n) : before_(torch::get_num_threads()) { torch::set_num_threads(n); }
  ~IntraOpThreads() { torch::set_num_threads(before_); }

 private:
  int before_;
};

}  // namespace loom::test
