// loom bench placement --simulate: Zeppelin's placement against uniform context parallelism and
// token-balanced packing, predicted by the cost model (parallel/placement/cost_model.h) on the
// clusters of configs/topology/ for long-tailed batches, with the ablation side by side (the
// planner alone, + routing, + remapping) and the planner's own time per step. A model, not a
// measurement: its figures are what the cost model predicts.
//   loom bench placement --simulate [--topology configs/topology/a800-4nic.yaml ...] [--gpus 16 32 64 128]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <random>

#include "launch/bench/benchmarks.h"
#include "launch/bench/synced_timing.h"
#include "parallel/placement/planner.h"
#include "runtime/core/error.h"
#include "runtime/core/text_file.h"

namespace loom {
namespace {

struct Distribution {
  const char* name;
  double median, sigma;
};

// A step's sequence lengths: lognormal draws in [64, max_length] until the batch holds
// tokens_per_gpu on every GPU.
std::vector<int64_t> draw_step(std::mt19937_64& rng, const Distribution& d, int64_t tokens, int64_t max_length) {
  std::lognormal_distribution<double> length(std::log(d.median), d.sigma);
  std::vector<int64_t> lengths;
  for (int64_t total = 0; total < tokens;) {
    lengths.push_back(std::clamp<int64_t>(std::llround(length(rng)), 64, max_length));
    total += lengths.back();
  }
  return lengths;
}

struct Row {
  double uniform = 0, balanced = 0, planner = 0, routed = 0, remapped = 0;  // summed step seconds
  std::vector<double> plan_us;
  int64_t sequences = 0;
};

Row simulate(const Topology& t, const Distribution& d, const PlacementBenchArgs& args, const CostModel& cost) {
  std::mt19937_64 rng(args.seed);
  Row row;
  for (int64_t step = 0; step < args.steps; ++step) {
    const auto lengths = draw_step(rng, d, args.tokens_per_gpu * t.world(), args.max_length);
    row.sequences += static_cast<int64_t>(lengths.size());
    row.uniform += plan_uniform(lengths, t, cost, args.cp).step_s;
    row.balanced += plan_token_balanced(lengths, t, cost, args.max_tokens_per_rank).step_s;
    row.planner += plan_zeppelin(lengths, t, cost, {false, false}, args.max_tokens_per_rank).step_s;
    row.routed += plan_zeppelin(lengths, t, cost, {true, false}, args.max_tokens_per_rank).step_s;
    const auto start = std::chrono::steady_clock::now();
    row.remapped += plan_zeppelin(lengths, t, cost, {true, true}, args.max_tokens_per_rank).step_s;
    row.plan_us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count());
  }
  return row;
}

}  // namespace

int run_bench_placement(const PlacementBenchArgs& args) {
  if (args.train) {
    check(!args.config.empty(), "loom bench placement --train needs --config: the experiment whose steps it measures");
    return run_bench_placement_train(args);
  }
  check(args.simulate, "loom bench placement: choose --simulate (the cost model's prediction on the paper's clusters) "
                       "or --train --config C (training steps measured on the ranks launched)");
  const CostModel cost = CostModel::llama(args.d_model, args.kv_width, args.ffn, args.layers, 2, args.flops_per_s);
  const std::vector<Distribution> distributions = {{"lognormal median 4K sigma 1.0", 4096, 1.0},
                                                   {"lognormal median 1K sigma 1.8", 1024, 1.8}};
  std::printf("loom bench placement --simulate: a Llama layer stack (d_model %ld, KV width %ld, MLP %ld, %ld layers, "
              "bf16) at %.0f TFLOP/s per GPU; uniform context parallelism over groups of %d GPUs; %ld tokens per GPU per step, lengths 64-%ld, at most %ld tokens per GPU; "
              "mean over %ld steps. Predicted by the cost model, not measured.\n",
              args.d_model, args.kv_width, args.ffn, args.layers, args.flops_per_s / 1e12, args.cp, args.tokens_per_gpu,
              args.max_length, args.max_tokens_per_rank, args.steps);
  std::printf("%-42s %5s %-30s %6s %10s %9s %9s %9s %9s %9s\n", "cluster", "gpus", "lengths", "seqs", "uniform_s",
              "balanced", "planner", "+routing", "+remap", "plan_us");
  nlohmann::json rows = nlohmann::json::array();
  for (const std::string& path : args.topologies) {
    Topology t = load_topology(path);
    for (const int gpus : args.gpus) {
      check(gpus % t.ranks_per_node == 0, "--gpus " + std::to_string(gpus) + ": " + path + " has nodes of " +
                                              std::to_string(t.ranks_per_node) + " GPUs; give a multiple of that");
      t.nodes = gpus / t.ranks_per_node;
      for (const Distribution& d : distributions) {
        const Row r = simulate(t, d, args, cost);
        const double steps = static_cast<double>(args.steps);
        const double sequences = static_cast<double>(r.sequences) / steps;
        std::printf("%-42s %5d %-30s %6.0f %10.3f %8.2fx %8.2fx %8.2fx %8.2fx %9.0f\n", t.name.c_str(), gpus, d.name,
                    sequences, r.uniform / steps, r.uniform / r.balanced, r.uniform / r.planner, r.uniform / r.routed,
                    r.uniform / r.remapped, median(r.plan_us));
        rows.push_back({{"cluster", t.name},       {"gpus", gpus},
                        {"lengths", d.name},       {"sequences", sequences},
                        {"uniform_step_s", r.uniform / steps},
                        {"token_balanced", r.uniform / r.balanced}, {"planner", r.uniform / r.planner},
                        {"routing", r.uniform / r.routed},          {"remap", r.uniform / r.remapped},
                        {"plan_us", median(r.plan_us)}});
      }
    }
  }
  std::printf("seqs: sequences per step (mean); uniform_s: the predicted step of uniform context parallelism (every sequence over a whole group); the other "
              "columns are speed-ups over it: balanced: every sequence whole, balanced on tokens; planner: Zeppelin's "
              "hierarchical placement alone; +routing: with inter-node ring traffic over the node's idle NICs; +remap: "
              "with the linear layers on a token-balanced layout; plan_us: the full planner's time per step (median)\n");
  if (!args.json_out.empty()) write_text_file(args.json_out, nlohmann::json{{"rows", rows}}.dump(2) + "\n");
  return 0;
}

}  // namespace loom
