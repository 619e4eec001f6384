// loom plan: where Zeppelin's planner computes one training step's sequences (each document of the
// step's micro-batches) under parallel.placement: zeppelin, with its predicted time next to uniform
// context parallelism's.
#include <cstdio>

#include "launch/commands.h"
#include "parallel/mesh.h"
#include "parallel/placement/planner.h"
#include "runtime/core/precision.h"
#include "runtime/data/batch_loader.h"
#include "runtime/train/step_placement.h"
#include "runtime/train/trainer.h"

namespace loom {
namespace {

// The document lengths of step `step`'s micro-batches, as the trainer's placement sees them.
std::vector<int64_t> step_lengths(const Config& c, int64_t step) {
  const TokenDataset data = load_training_data(c);
  BatchLoader loader(data, split_documents(data, Split::kTrain, c.data.val_fraction), c.train.seq_len, c.data.loss_on,
                     static_cast<uint64_t>(c.run.seed));
  const int64_t accumulation = c.accumulation_steps();
  for (int64_t i = 0; i < step * accumulation; ++i) loader.skip();
  return next_step_lengths(loader, accumulation);
}

// "0-7" for a run of consecutive ranks, else the ranks listed.
std::string ranks_text(const std::vector<int>& ranks) {
  if (ranks.back() - ranks.front() + 1 == static_cast<int>(ranks.size()) && ranks.size() > 2)
    return std::to_string(ranks.front()) + "-" + std::to_string(ranks.back());
  std::string s;
  for (const int r : ranks) s += (s.empty() ? "" : ",") + std::to_string(r);
  return s;
}

}  // namespace

int run_plan(const PlanArgs& args) {
  Config c = load_config(args.config, args.overrides);
  if (!args.topology.empty()) c.parallel.topology = args.topology;
  const auto& p = c.parallel;
  // With a topology, its ranks are the dp x sp replicas (resolve_mesh_shape refuses a dp that disagrees).
  const int64_t world = p.topology.empty() ? (p.dp == ParallelConfig::kAuto ? 1 : p.dp) * p.sp * p.tp
                                           : load_topology(p.topology).world() * p.tp;
  const MeshShape shape = resolve_mesh_shape(c, world);
  const Topology t = placement_topology(c, shape.dp * shape.sp);
  CostModel cost = placement_cost(c, t);
  if (args.flops_per_s > 0) cost.set_rate(args.flops_per_s);
  const int64_t bytes = static_cast<int64_t>(c10::elementSize(parse_dtype(c.train.dtype)));
  const std::vector<int64_t> lengths = step_lengths(c, args.step);
  const StepPlan zeppelin = plan_zeppelin(lengths, t, cost, {}, placement_cap(c));
  const StepPlan uniform = plan_uniform(lengths, t, cost, static_cast<int>(shape.sp));
  int64_t tokens = 0;
  for (const int64_t l : lengths) tokens += l;
  std::printf("loom plan: step %ld of %s, %zu sequences, %ld tokens, on %s (%d nodes x %d ranks, %d NICs each)\n"
              "cost model: d_model %ld, %ld layers, %ld-byte activations, at %.3g FLOP/s per rank (%.3g on attention); at most %ld tokens "
              "of a sequence per rank (train.seq_len / parallel.sp)\n",
              args.step, args.config.c_str(), lengths.size(), tokens, t.name.c_str(), t.nodes, t.ranks_per_node,
              t.nics_per_node, c.model.d_model, c.model.n_layers, bytes, cost.flops_per_s, cost.attention_flops_per_s,
              placement_cap(c));
  std::printf("%9s %8s  %-11s %s\n", "sequence", "tokens", "span", "ranks");
  for (const Placement& p : zeppelin.placements)
    std::printf("%9ld %8ld  %-11s %s\n", p.sequence, lengths[p.sequence], span_name(p.span), ranks_text(p.ranks).c_str());
  std::printf("predicted step (the cost model's, not a measurement): zeppelin %.4g s (placement alone, as the trainer "
              "runs it: no routing or remapping yet); uniform context parallelism over groups of %ld ranks %.4g s; "
              "speed-up %.2fx\n",
              zeppelin.step_s, shape.sp, uniform.step_s, uniform.step_s / zeppelin.step_s);
  return 0;
}

}  // namespace loom
