// The `loom` subcommands. main.cpp parses the command line; each function here does one command and
// throws loom::Error for anything the user can fix.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace loom {

struct TrainArgs {
  std::string config;
  std::vector<std::string> overrides;
  std::string resume;
  bool dry_run = false;
  int64_t world = 0;  // ranks the dry run checks for; 0 = what the config's degrees make
};
int run_train(const TrainArgs& args);
int run_train_dry(const TrainArgs& args);

struct PlanArgs {
  std::string config, topology;
  std::vector<std::string> overrides;
  int64_t step = 0;
  double flops_per_s = 0;  // 0: the topology's rank_tflops
};
int run_plan(const PlanArgs& args);

struct EvalArgs {
  std::string checkpoint, data, json_out;
  std::string dump_logits, text;  // --dump-logits FILE --text TEXT: the logits of TEXT's tokens, nothing else
  int64_t max_docs = 256;
};
int run_eval(const EvalArgs& args);

struct GenerateArgs {
  std::string checkpoint, prompt;
  int64_t max_new = 64;
  double temperature = 0.0;
  uint64_t seed = 0;
};
int run_generate(const GenerateArgs& args);

struct ExportArgs {
  std::string checkpoint, format, out, dtype = "f32";
  double shard_mb = 2048;  // hf: largest safetensors shard
};
int run_export(const ExportArgs& args);

struct ImportArgs {
  std::string hf, out;
};
int run_import(const ImportArgs& args);

struct SynthArgs {
  std::string task = "passkey", style = "prose", out;
  int64_t docs = 1000, min_len = 256, max_len = 4096, key_digits = 5;
  int64_t pairs = 8, key_len = 1, value_len = 1;  // recall (RecallOptions's defaults)
  uint64_t seed = 1;
};
int run_data_synth(const SynthArgs& args);

// What `loom --version` prints: the libraries Loom runs on and the machine, one "name: value" a line.
std::string version_report();
int run_data_prepare(const std::vector<std::string>& inputs, const std::string& out);
int run_data_inspect(const std::string& path);
int run_summary(const std::string& run_dir, const std::string& plot = "");
int run_config_keys();

}  // namespace loom
