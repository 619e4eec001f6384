// loom bench tensor: forward + backward of a tensor-parallel layer stack over one long document, on
// the tp ranks it was launched on, with every residual boundary synchronous (`unsplit`) and with
// TokenWeave's token splitting (`split`: one half's boundaries run on the boundary worker while the
// other half computes), side by side in one run. Each one's time is split in the same run into its
// computation alone (every reduce-scatter and all-gather completing at once with zeros) and its
// communication alone (the same collectives replayed back to back), which gives the communication
// it leaves exposed (time - compute) and the fraction it hides: (compute + comm - time) / comm.
// Plus the computation's FLOP/s against the matmul ceiling measured in the same run.
//   launch/loom-run -n 2 -- loom bench tensor [--seq-len 4096 8192] [--d-model 512] [--layers 2]
#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "launch/bench/benchmarks.h"
#include "launch/bench/exchange_replay.h"
#include "launch/bench/machine_ceiling.h"
#include "launch/bench/synced_timing.h"
#include "parallel/comm/mpi_communicator.h"
#include "runtime/core/error.h"
#include "runtime/core/text_file.h"
#include "runtime/model/parallelize.h"

namespace loom {
namespace {

struct Workload {
  ModelConfig model;
  SequenceShard input;
  torch::Tensor dout;  // the gradient of the final hidden states
};

Workload make_workload(int64_t tokens, const TensorBenchArgs& args) {
  Workload w;
  w.model.d_model = args.d_model;
  w.model.n_layers = args.layers;
  w.model.n_heads = w.model.n_kv_heads = args.d_model / 64;
  w.model.max_seq_len = tokens;
  torch::manual_seed(0);
  w.input = whole_sequence({torch::randint(w.model.vocab_size, {tokens}, torch::kInt64), torch::arange(tokens, torch::kInt64),
                            torch::zeros({tokens}, torch::kInt64), {}, 0});
  w.dout = torch::randn({tokens, args.d_model});
  return w;
}

// The layer stack's FLOPs per fwd+bwd on one rank: the whole model's less its LM head, over tp.
double flops_per_rank(const Llama& model, const Workload& w, int tp) {
  const auto tokens = static_cast<double>(w.input.tokens.tokens.size(0));
  const double head = 3.0 * 2.0 * static_cast<double>(w.model.d_model * w.model.vocab_size) * tokens;
  return (model->training_flops(w.input.tokens) - head) / tp;
}

// The model split over `tp`, its tokens split with boundaries on `weave` where `worker` is set.
Llama tensor_parallel_model(const ModelConfig& c, Communicator& tp, Communicator& weave, BoundaryWorker* worker) {
  torch::manual_seed(1);
  Llama model(c);
  ParallelPlan plan;
  plan.tp = &tp;
  plan.token_weave = {&weave, worker, 0};
  parallelize(model, plan);
  return model;
}

void forward_backward(Llama& model, const Workload& w) {
  model->zero_grad();
  (model->hidden(w.input) * w.dout).sum().backward();
}

struct Split {
  double time = 0, compute = 0, comm = 0;  // slowest rank, medians
  double mb = 0;                           // sent by rank 0 per fwd+bwd
  double exposed() const { return time - compute; }
  // The fraction of the communication hidden behind `baseline` seconds of computation: its own
  // (`hidden`), or the unsplit computation's, which charges splitting's extra computation to it.
  double hidden_behind(double baseline) const {
    return comm > 0 ? std::clamp((baseline + comm - time) / comm, 0.0, 1.0) : 1.0;
  }
  double hidden() const { return hidden_behind(compute); }
};

// The three timings alternate, round by round, so that a shared machine's drift moves them alike.
Split measure(Communicator& world, Communicator& tp, Communicator& weave, const Workload& w, bool split,
              const TensorBenchArgs& args) {
  // Declared first, so it outlives the models whose backward graphs refer to it.
  const auto worker = split ? std::make_unique<BoundaryWorker>() : nullptr;
  RecordingCommunicator recorded_tp(tp), recorded_weave(weave);
  NullCommunicator null_tp(tp), null_weave(weave);
  Llama recorded = tensor_parallel_model(w.model, recorded_tp, recorded_weave, worker.get());
  Llama real = tensor_parallel_model(w.model, tp, weave, worker.get());
  Llama alone = tensor_parallel_model(w.model, null_tp, null_weave, worker.get());
  forward_backward(recorded, w);  // also a warm-up
  ExchangeReplay replay({{&tp, &recorded_tp.recorded()}, {&weave, &recorded_weave.recorded()}});
  const std::vector<std::function<void()>> runs = {
      [&] { forward_backward(real, w); }, [&] { forward_backward(alone, w); }, [&] { replay.run(); }};
  for (int64_t i = 1; i < args.warmups; ++i)
    for (const auto& run : runs) run();
  std::vector<std::vector<double>> times(runs.size());
  for (int64_t rep = 0; rep < args.reps; ++rep)
    for (size_t i = 0; i < runs.size(); ++i) times[i].push_back(synced_time(world, runs[i]));
  Split s{median(times[0]), median(times[1]), median(times[2]), 0};
  for (const char* kind : {"reduce_scatter", "all_gather"})
    s.mb += static_cast<double>(recorded_tp.counters().of_kind(kind).sent + recorded_weave.counters().of_kind(kind).sent) / 1e6;
  return s;
}

}  // namespace

int run_bench_tensor(const TensorBenchArgs& args) {
  auto world = mpi_world(3600);
  const int rank = world->rank(), tp = world->size();
  check(args.d_model % 64 == 0 && (args.d_model / 64) % tp == 0,
        "--d-model " + std::to_string(args.d_model) + ": it must be a multiple of 64 whose heads of 64 (d_model / 64) split "
        "evenly over the " + std::to_string(tp) + " ranks; try " + std::to_string(64 * tp * std::max<int64_t>(1, args.d_model / (64 * tp))));
  auto tp_group = world->split(0, rank, "tp"), weave = world->split(0, rank, "tp_weave");
  const bool root = rank == 0;
  MachineCeiling machine;
  if (root) machine = measure_machine_ceiling();  // alone: the other ranks wait
  barrier_now(*world);
  if (root)
    std::printf("loom bench tensor: tp %d, %ld layers of d_model %ld (%ld heads of 64), one causal document, float32, "
                "fwd+bwd of the layer stack (median of %ld)\n%s\n",
                tp, args.layers, args.d_model, args.d_model / 64, args.reps, machine.summary().c_str());
  if (root)
    std::printf("%7s %-8s %9s %9s %9s %10s %7s %7s %9s %8s %8s\n", "tokens", "boundary", "time_s", "compute_s", "comm_s",
                "exposed_s", "hidden", "net", "MB_sent", "speedup", "compute");
  nlohmann::json rows = nlohmann::json::array();
  for (const int64_t tokens : args.seq_lens) {
    const Workload w = make_workload(tokens, args);
    const double flops = flops_per_rank(Llama(w.model), w, tp);
    nlohmann::json row = {{"tokens", tokens}};
    Split unsplit;
    for (const bool split : {false, true}) {
      const Split s = measure(*world, *tp_group, *weave, w, split, args);
      const char* name = split ? "split" : "unsplit";
      if (!split) unsplit = s;
      const double net = s.hidden_behind(unsplit.compute);
      if (root) {
        std::printf("%7ld %-8s %9.3f %9.3f %9.3f %+10.3f %6.0f%% %6.0f%% %9.1f %7.2fx %8s\n", tokens, name, s.time, s.compute,
                    s.comm, s.exposed(), 100 * s.hidden(), 100 * net, s.mb, unsplit.time / s.time,
                    percent_of(flops / s.compute, machine.matmul_flops).c_str());
        std::fflush(stdout);
      }
      row[name] = {{"time_s", s.time},       {"compute_s", s.compute}, {"comm_s", s.comm},  {"exposed_s", s.exposed()},
                   {"hidden", s.hidden()}, {"net_hidden", net}, {"mb_sent", s.mb},         {"compute_flops", flops / s.compute}};
    }
    rows.push_back(row);
  }
  if (root) {
    std::printf("compute_s: the same fwd+bwd with every collective completing at once; comm_s: its reduce-scatters and "
                "all-gathers alone, back to back; exposed = time - compute; hidden = (compute + comm - time) / comm; "
                "net: the same with the unsplit compute_s, so splitting's extra computation counts as exposed; "
                "MB_sent: by rank 0 per fwd+bwd; speedup: unsplit time / this time; compute: the computation alone against "
                "the matmul ceiling\n");
    if (!args.json_out.empty())
      write_text_file(args.json_out, nlohmann::json{{"ranks", tp}, {"matmul_ceiling_flops", machine.matmul_flops},
                                                    {"d_model", args.d_model}, {"layers", args.layers}, {"rows", rows}}
                                         .dump(2) + "\n");
  }
  return 0;
}

}  // namespace loom
