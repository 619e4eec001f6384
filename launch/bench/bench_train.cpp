// loom bench train: achieved training FLOP/s for a few model widths, as a fraction of the float32
// matmul ceiling measured in the same run.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "launch/bench/benchmarks.h"
#include "launch/bench/machine_ceiling.h"
#include "optim/adamw.h"
#include "runtime/core/text_file.h"
#include "runtime/train/metrics_log.h"
#include "runtime/data/batch_loader.h"
#include "runtime/model/llama.h"
#include "runtime/model/lm_loss.h"

namespace loom {
namespace {

// One packed step of 1K-token documents, the shape of a typical long-context batch.
PackedTensors synthetic_batch(int64_t seq_len, int64_t vocab) {
  const int64_t doc_len = std::min<int64_t>(1024, seq_len);
  PackedTensors b;
  b.tokens = torch::randint(vocab, {seq_len}, torch::kInt64);
  const auto index = torch::arange(seq_len, torch::kInt64);
  b.positions = index.remainder(doc_len);
  b.doc_ids = index.div(doc_len, "floor");
  b.labels = torch::randint(vocab, {seq_len}, torch::kInt64);
  b.label_count = seq_len;
  return b;
}

ModelConfig bench_model(int64_t d_model, int64_t seq_len) {
  ModelConfig c;
  c.d_model = d_model;
  c.n_layers = 4;
  c.n_heads = std::max<int64_t>(1, d_model / 64);
  c.n_kv_heads = c.n_heads;
  c.max_seq_len = seq_len;
  return c;
}

struct BenchRow {
  int64_t d_model, n_layers, params;
  double seconds, flops;
};

BenchRow measure(int64_t d, const TrainBenchArgs& args) {
  torch::manual_seed(0);
  Llama model(bench_model(d, args.seq_len));
  AdamW optimizer(model->parameter_list(), {});
  const PackedTensors batch = synthetic_batch(args.seq_len, model->config().vocab_size);
  const double seconds = median_seconds(static_cast<int>(args.steps), [&] {
    for (auto& p : model->parameters()) p.mutable_grad() = torch::Tensor();
    (summed_loss(model->forward(batch.tokens, batch.positions, batch.doc_ids), batch.labels) / batch.label_count).backward();
    optimizer.step(1e-4);
  });
  return {d, model->config().n_layers, model->num_parameters(), seconds, model->training_flops(batch) / seconds};
}

}  // namespace

int run_bench_train(const TrainBenchArgs& args) {
  // The machine is shared: its ceiling is measured before and after the rows, and the higher of the
  // two (noise only ever lowers a measurement) is what the rows are compared with.
  const MachineCeiling before = measure_machine_ceiling();
  std::printf("machine (before): %d cores | %s\n", before.cores, before.summary().c_str());
  std::vector<BenchRow> rows;
  for (int64_t d : args.d_models) rows.push_back(measure(d, args));
  const MachineCeiling after = measure_machine_ceiling();
  std::printf("machine (after): %d cores | %s\n", after.cores, after.summary().c_str());
  const MachineCeiling& ceiling = higher(before, after);

  std::printf("%8s %8s %10s %12s %12s %12s %10s\n", "d_model", "layers", "params", "step_s", "tokens/s", "FLOP/s",
              "of_ceiling");
  nlohmann::json json_rows = nlohmann::json::array();
  for (const auto& r : rows) {
    const double fraction = r.flops / ceiling.matmul_flops;
    std::printf("%8ld %8ld %10s %12.3f %12s %12s %10s\n", r.d_model, r.n_layers, human_count(static_cast<double>(r.params)).c_str(),
                r.seconds, human_count(static_cast<double>(args.seq_len) / r.seconds).c_str(), human_count(r.flops).c_str(),
                percent_of(r.flops, ceiling.matmul_flops).c_str());
    json_rows.push_back({{"d_model", r.d_model}, {"n_layers", r.n_layers}, {"params", r.params}, {"seq_len", args.seq_len},
                         {"step_s", r.seconds}, {"tokens_per_s", args.seq_len / r.seconds}, {"flops_per_s", r.flops},
                         {"fraction_of_matmul_ceiling", fraction}});
  }
  if (!args.json_out.empty()) {
    const nlohmann::json out = {{"benchmark", "train"}, {"matmul_ceiling_flops", ceiling.matmul_flops},
                                {"nominal_peak_flops", ceiling.nominal_flops}, {"memory_bytes_per_s", ceiling.memory_bytes_s}, {"cores", ceiling.cores}, {"rows", json_rows}};
    write_text_file(args.json_out, out.dump(2) + "\n");
  }
  return 0;
}

}  // namespace loom
