#include "tests/test_util.h"

#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sys/wait.h>

#include "runtime/data/passkey_task.h"

namespace loom::test {

namespace fs = std::filesystem;

ScratchDir::ScratchDir() {
  std::random_device rd;
  root_ = (fs::temp_directory_path() / ("loom-test-" + std::to_string(rd()) + std::to_string(rd()))).string();
  fs::create_directories(root_);
}

ScratchDir::~ScratchDir() { fs::remove_all(root_); }

std::string ScratchDir::path(const std::string& name) const { return name.empty() ? root_ : root_ + "/" + name; }

ModelConfig tiny_model(bool tied) {
  ModelConfig c;
  c.vocab_size = 40;
  c.d_model = 16;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.d_ff = 24;
  c.tie_embeddings = tied;
  c.init_std = 0.2;
  return c;
}

Config tiny_config(const std::string& data_path, const std::string& run_dir) {
  Config c;
  c.run.dir = run_dir;
  c.model.d_model = 32;
  c.model.n_layers = 2;
  c.model.n_heads = 4;
  c.model.n_kv_heads = 2;
  c.model.max_seq_len = 512;
  c.data.path = data_path;
  c.train.steps = 6;
  c.train.seq_len = 256;
  c.train.tokens_per_step = 512;
  c.train.lr = 3e-3;
  c.train.warmup_steps = 2;
  c.train.dtype = "float64";
  c.log.progress = false;
  return c;
}

std::string write_tiny_passkey(const ScratchDir& dir, int64_t docs) {
  const std::string path = dir.path("passkey.h5");
  write_dataset(path, make_passkey_dataset({docs, 150, 400, 7}));
  return path;
}

ProcessResult run_command(const std::string& command) {
  const auto start = std::chrono::steady_clock::now();
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  std::string output;
  std::array<char, 4096> buf;
  while (size_t n = fread(buf.data(), 1, buf.size(), pipe)) output.append(buf.data(), n);
  const int status = pclose(pipe);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), output, seconds};
}

ProcessResult run_loom(const std::string& args, const std::string& env) {
  return run_command(env + " " + LOOM_BINARY + " " + args);
}

ProcessResult run_loom_ranks(int ranks, const std::string& args, const std::string& env) {
  return run_command(env + " OMP_NUM_THREADS=1 " + LOOM_RUN + " -n " + std::to_string(ranks) + " -- " + LOOM_BINARY + " " + args);
}

std::vector<nlohmann::json> step_records(const std::string& run_dir) {
  std::vector<nlohmann::json> out;
  std::ifstream in(run_dir + "/metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    if (!j.contains("kind")) out.push_back(j);
  }
  return out;
}

}  // namespace loom::test
