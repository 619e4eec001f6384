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
  uint64_t seed = 1;
};
int run_data_synth(const SynthArgs& args);
int run_data_prepare(const std::vector<std::string>& inputs, const std::string& out);
int run_data_inspect(const std::string& path);
int run_summary(const std::string& run_dir);

struct BenchArgs {
  std::string json_out;
  int64_t steps = 3;
  std::vector<int64_t> d_models = {128, 256, 512};
  int64_t seq_len = 4096;
};
int run_bench_train(const BenchArgs& args);

struct BenchCommArgs {
  std::string json_out;
  int64_t min_bytes = 4 << 10, max_bytes = 256 << 20;  // sizes go up by 4x
  int64_t reps = 5;                                     // at least this many timed repetitions
  int64_t overlap_bytes = 64 << 20;
};
int run_bench_comm(const BenchCommArgs& args);

struct BenchAttentionArgs {
  std::string json_out;
  std::vector<int64_t> seq_lens = {4096, 8192};
  std::vector<int64_t> kv_heads = {4, 1};  // MHA and GQA 4:1
  int64_t heads = 4, head_dim = 32, reps = 3, warmups = 1;
};
int run_bench_attention(const BenchAttentionArgs& args);

struct BenchChunkwiseArgs {
  std::string json_out;
  std::vector<int64_t> lengths = {1024, 2048, 4096, 8192, 16384};
  int64_t chunk_size = 512, d_model = 128, layers = 2, reps = 1;
  double budget = 0.125;     // SpaCO: fraction of chunks visited
  double headroom_mb = 64;   // the cap: the baseline process plus this much
  std::string child;         // internal: measure this strategy in this process
  int64_t child_length = 0;
};
int run_bench_chunkwise(const BenchChunkwiseArgs& args);

}  // namespace loom
