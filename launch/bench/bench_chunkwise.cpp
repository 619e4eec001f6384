// loom bench chunkwise: peak memory and step time of full backprop (plain, with selective and with
// full activation checkpointing), SeCO and SpaCO on one long causal document, and the longest
// sequence each trains within one memory cap.
//
// Every measurement runs in a fresh `loom` process (this executable, started again with --child),
// so its peak resident set is its own: no allocator cache or high-water mark from an earlier
// measurement leaks into the next one.
#include <cstdio>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>

#include "launch/bench/benchmarks.h"
#include "launch/bench/machine_ceiling.h"
#include "optim/adamw.h"
#include "runtime/model/parallelize.h"
#include "runtime/train/chunkwise/chunkwise_backprop.h"
#include "runtime/core/error.h"
#include "runtime/core/text_file.h"
#include "runtime/train/metrics_log.h"

namespace loom {
namespace {

// Full backprop plain, with selective and with full activation checkpointing; then chunk-wise.
const std::vector<std::string> kStrategies = {"full", "selective", "checkpoint", "seco", "spaco"};

bool backprops_whole_sequence(const std::string& strategy) { return strategy != "seco" && strategy != "spaco"; }

// Llama-3-like proportions at a size two CPU cores can train on 16K tokens: GQA 4:1.
ModelConfig bench_model(const ChunkwiseBenchArgs& a, int64_t length) {
  ModelConfig c;
  c.d_model = a.d_model;
  c.n_layers = a.layers;
  c.n_heads = 4;
  c.n_kv_heads = 1;
  c.max_seq_len = length;
  return c;
}

// One document of `length` random tokens: the long-context case, attention over the whole prefix.
PackedTensors one_document(int64_t length, int64_t vocab) {
  const auto positions = torch::arange(length, torch::kInt64);
  return {torch::randint(vocab, {length}, torch::kInt64), positions, torch::zeros_like(positions),
          torch::randint(vocab, {length}, torch::kInt64), length};
}

struct Measurement {
  double seconds = 0;
  int64_t peak_bytes = 0;
};

// The child's side: one optimizer step per repetition, after one warm-up step.
Measurement measure_here(const ChunkwiseBenchArgs& a, const std::string& strategy, int64_t length) {
  torch::manual_seed(0);
  Llama model(bench_model(a, length));
  if (strategy == "selective" || strategy == "checkpoint") {
    ParallelPlan plan;
    plan.activation_checkpoint = strategy == "selective" ? "selective" : "full";
    parallelize(model, plan);
  }
  AdamW optimizer(model->parameter_list(), {});
  const PackedTensors seq = one_document(length, model->config().vocab_size);
  const int64_t chunks = chunk_count(length, a.chunk_size);
  SpacoConfig spaco;
  spaco.sampling = "fixed";  // exactly budget x chunks visited each step: steadier timing than Bernoulli
  spaco.budget = a.budget;
  uint64_t draw = 0;
  const double seconds = median_seconds(static_cast<int>(a.reps), [&] {
    for (auto& p : model->parameters()) p.mutable_grad() = torch::Tensor();
    if (backprops_whole_sequence(strategy)) {
      (summed_loss(model->forward(seq.tokens, seq.positions, seq.doc_ids), seq.labels) / static_cast<double>(length)).backward();
    } else {
      const ChunkSelection selection = strategy == "seco" ? all_chunks(chunks) : sample_chunks(spaco, chunks, 0, draw++);
      chunkwise_backward(model, seq, a.chunk_size, selection, static_cast<double>(length));
    }
    optimizer.step(1e-4);
  });
  return {seconds, peak_rss_bytes()};
}

// The parent's side: starts this executable again for one measurement and reads its result line.
Measurement measure_in_child(const ChunkwiseBenchArgs& a, const std::string& strategy, int64_t length) {
  const std::string command = std::filesystem::read_symlink("/proc/self/exe").string() + " bench chunkwise --child " +
                              strategy + " --child-length " + std::to_string(length) + " --chunk " +
                              std::to_string(a.chunk_size) + " --budget " + std::to_string(a.budget) + " --d-model " +
                              std::to_string(a.d_model) + " --layers " + std::to_string(a.layers) + " --reps " +
                              std::to_string(a.reps);
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(command.c_str(), "r"), pclose);
  check(pipe != nullptr, "cannot start a measurement process: " + command);
  std::string output;
  char buffer[4096];
  while (fgets(buffer, sizeof buffer, pipe.get())) output += buffer;
  const auto start = output.rfind("{\"peak_bytes\"");
  check(start != std::string::npos, "the measurement of " + strategy + " at " + std::to_string(length) +
                                        " tokens printed no result:\n" + output);
  const auto j = nlohmann::json::parse(output.substr(start));
  return {j["seconds"].get<double>(), j["peak_bytes"].get<int64_t>()};
}

double mb(int64_t bytes) { return static_cast<double>(bytes) / (1 << 20); }

struct Row {
  int64_t length;
  std::map<std::string, Measurement> by;
};

// The longest measured length whose peak stays under the cap (0 if none).
int64_t longest_within(const std::vector<Row>& rows, const std::string& strategy, int64_t cap) {
  int64_t longest = 0;
  for (const auto& r : rows) {
    if (r.by.at(strategy).peak_bytes <= cap) longest = r.length;
  }
  return longest;
}

}  // namespace

int run_bench_chunkwise(const ChunkwiseBenchArgs& a) {
  check(a.budget > 0 && a.budget <= 1, "--budget is the fraction of chunks SpaCO visits: (0, 1]");
  if (!a.child.empty()) {
    const Measurement m = measure_here(a, a.child, a.child_length);
    std::printf("{\"peak_bytes\": %ld, \"seconds\": %.6f}\n", m.peak_bytes, m.seconds);
    return 0;
  }
  const MachineCeiling ceiling = measure_machine_ceiling();
  std::printf("machine: %d cores | %s\nmodel d_model %ld, %ld layers, 4 heads, 1 KV head | chunks of %ld tokens, SpaCO "
              "visits %g of them\n",
              ceiling.cores, ceiling.summary().c_str(), a.d_model, a.layers, a.chunk_size, a.budget);
  // The cap is the footprint of the process with the model, its optimizer state and a 64-token
  // step, plus a fixed headroom: the memory left for training activations.
  const int64_t baseline = measure_in_child(a, "full", 64).peak_bytes;
  const auto cap = baseline + static_cast<int64_t>(a.headroom_mb * (1 << 20));
  std::printf("baseline peak %.0f MB; cap = baseline + %.0f MB = %.0f MB\n\n", mb(baseline), a.headroom_mb, mb(cap));
  std::printf("seconds per step | ratio to full | peak MB above baseline; selective and checkpoint: full backprop "
              "with train.activation_checkpoint selective or full\n%8s |", "tokens");
  for (const auto& s : kStrategies) std::printf(" %10s", s.c_str());
  std::printf(" |");
  for (size_t i = 1; i < kStrategies.size(); ++i) std::printf(" %10s", kStrategies[i].c_str());
  std::printf(" |");
  for (const auto& s : kStrategies) std::printf(" %10s", s.c_str());
  std::printf("\n");
  std::vector<Row> rows;
  nlohmann::json json_rows = nlohmann::json::array();
  for (int64_t length : a.lengths) {
    Row row{length, {}};
    for (const auto& s : kStrategies) row.by[s] = measure_in_child(a, s, length);
    std::printf("%8ld |", length);
    for (const auto& s : kStrategies) std::printf(" %10.2f", row.by[s].seconds);
    std::printf(" |");
    for (size_t i = 1; i < kStrategies.size(); ++i) std::printf(" %10.2f", row.by[kStrategies[i]].seconds / row.by["full"].seconds);
    std::printf(" |");
    for (const auto& s : kStrategies) std::printf(" %10.1f", mb(row.by[s].peak_bytes - baseline));
    std::printf("\n");
    std::fflush(stdout);
    nlohmann::json j = {{"length", length}};
    for (const auto& [s, m] : row.by) j[s] = {{"seconds", m.seconds}, {"peak_bytes", m.peak_bytes}};
    json_rows.push_back(j);
    rows.push_back(row);
  }
  std::printf("\nlongest of these lengths within the cap:");
  nlohmann::json longest;
  for (const auto& s : kStrategies) {
    longest[s] = longest_within(rows, s, cap);
    std::printf(" %s %ld", s.c_str(), longest[s].get<int64_t>());
  }
  const auto full_max = longest["full"].get<int64_t>();
  if (full_max > 0) std::printf(" | seco / full = %.0fx", static_cast<double>(longest["seco"].get<int64_t>()) / full_max);
  std::printf("\n");
  if (!a.json_out.empty()) {
    const nlohmann::json out = {{"benchmark", "chunkwise"}, {"matmul_ceiling_flops", ceiling.matmul_flops},
                                {"baseline_bytes", baseline}, {"cap_bytes", cap}, {"chunk_size", a.chunk_size},
                                {"budget", a.budget}, {"rows", json_rows}, {"longest_within_cap", longest}};
    write_text_file(a.json_out, out.dump(2) + "\n");
  }
  return 0;
}

}  // namespace loom
