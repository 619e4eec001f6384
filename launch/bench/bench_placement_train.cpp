// loom bench placement --train: the same training steps under uniform placement and under
// Zeppelin's, alternating step by step in one job on the ranks it was launched on (an emulated
// cluster: scripts/cluster), with the cost model's prediction of each next to the measurement.
//   launch/loom-run [--cluster DIR] -n N -- loom bench placement --train --config C [--steps 6]
// Both runs start from the same weights and read the same batches. parallel.topology describes
// the cluster to the planner and the cost model; the model's rate per rank is the one measured in
// this run (the placed steps' FLOP/s), so the prediction tests the model's shape, not its rate.
#include <cstdio>

#include "launch/bench/benchmarks.h"
#include "launch/bench/machine_ceiling.h"
#include "launch/bench/synced_timing.h"
#include "parallel/comm/mpi_communicator.h"
#include "parallel/placement/planner.h"
#include "runtime/core/error.h"
#include "runtime/train/train_step.h"
#include "runtime/train/trainer.h"
#include "runtime/train/training_run.h"

namespace loom {
namespace {

struct Measured {
  std::vector<double> step_s, flops_per_rank_s;
  int64_t tokens = 0, split = 0;  // split: documents placed on rings (zeppelin)
};

struct Predicted {
  double zeppelin_s = 0, uniform_s = 0;
};

// The cost model's step times for the documents of the next step `loader` gives.
Predicted predict_step(BatchLoader& loader, const Config& c, const Topology& t, const CostModel& cost) {
  const std::vector<int64_t> lengths = next_step_lengths(loader, c.accumulation_steps());
  return {plan_zeppelin(lengths, t, cost, {}, placement_cap(c)).step_s,
          plan_uniform(lengths, t, cost, static_cast<int>(c.parallel.sp)).step_s};
}

Config with_placement(Config c, const std::string& placement) {
  c.parallel.placement = placement;
  if (placement == "uniform") c.parallel.topology.clear();
  c.log.progress = false;
  return c;
}

}  // namespace

int run_bench_placement_train(const PlacementBenchArgs& args) {
  const Config base = load_config(args.config, args.overrides);
  const Config uniform = with_placement(base, "uniform"), zeppelin = with_placement(base, "zeppelin");
  const TokenDataset data = load_training_data(base);
  auto world = mpi_world(3600);
  const MeshShape shape = resolve_mesh_shape(uniform, world->size());
  Mesh mesh(std::move(world), shape);
  Communicator& all = *mesh.host().world;
  MachineCeiling machine;
  if (mesh.is_root()) machine = measure_machine_ceiling();  // alone: the other rank waits
  barrier_now(all);
  TrainingRun runs[2] = {{uniform, data, mesh, c10::Device(c10::kCPU)}, {zeppelin, data, mesh, c10::Device(c10::kCPU)}};
  const BatchLoader first_step = runs[0].loader;
  Measured measured[2];
  for (int64_t step = 0; step < args.warmups + args.steps; ++step) {
    for (int k = 0; k < 2; ++k) {
      StepMetrics m;
      const double seconds = synced_time(all, [&] { m = train_step(runs[k], step, nullptr); });
      if (step < args.warmups) continue;
      measured[k].step_s.push_back(seconds);
      measured[k].flops_per_rank_s.push_back(m.flops_per_s / static_cast<double>(shape.world()));
      measured[k].tokens += m.tokens;
      measured[k].split += std::max<int64_t>(0, m.split_sequences);
    }
  }
  if (!mesh.is_root()) return 0;
  // The predictions again with the rate the placed steps achieved.
  CostModel cost = placement_cost(base, runs[1].placement->topology());
  cost.set_rate(median(measured[1].flops_per_rank_s));
  BatchLoader again = first_step;
  double predicted_s[2] = {0, 0};
  for (int64_t step = 0; step < args.warmups + args.steps; ++step) {
    const Predicted p = predict_step(again, base, runs[1].placement->topology(), cost);
    if (step < args.warmups) continue;
    predicted_s[0] += p.uniform_s / static_cast<double>(args.steps);
    predicted_s[1] += p.zeppelin_s / static_cast<double>(args.steps);
  }
  const Topology& t = runs[1].placement->topology();
  std::printf("loom bench placement --train: %s on %ld ranks as %s (%d x %d), %ld steps after %ld warm-up, alternating\n"
              "model: d_model %ld, %ld layers, %s; step: %ld tokens of seq_len %ld; uniform: sp %ld; zeppelin: at most %ld "
              "tokens of a document per rank; cost-model rate: %.3g FLOP/s per rank (measured, placed steps: %s of "
              "the matmul ceiling)\n%s\n",
              args.config.c_str(), shape.world(), t.name.c_str(), t.nodes, t.ranks_per_node, args.steps, args.warmups,
              base.model.d_model, base.model.n_layers, base.train.dtype.c_str(), base.train.tokens_per_step,
              base.train.seq_len, shape.sp, placement_cap(base), cost.flops_per_s,
              percent_of(cost.flops_per_s, machine.matmul_flops).c_str(), machine.summary().c_str());
  std::printf("%-9s %12s %12s %9s %14s %11s %10s\n", "placement", "median_s", "tokens/s", "speedup", "predicted_s",
              "pred_speedup", "split_docs");
  const char* names[2] = {"uniform", "zeppelin"};
  for (int k = 0; k < 2; ++k) {
    const double step_s = median(measured[k].step_s);
    // Uniform splits every packed sequence over the sp group, whatever its documents.
    const std::string split = k == 0 ? "all" : std::to_string(measured[k].split);
    std::printf("%-9s %12.3f %12.0f %8.2fx %14.4g %10.2fx %10s\n", names[k], step_s,
                static_cast<double>(measured[k].tokens) / static_cast<double>(args.steps) / step_s,
                median(measured[0].step_s) / step_s, predicted_s[k], predicted_s[0] / predicted_s[k], split.c_str());
  }
  return 0;
}

}  // namespace loom
