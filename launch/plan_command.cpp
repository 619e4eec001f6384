// loom plan: where Zeppelin's planner would compute one training step's sequences (each document
// of the step's micro-batches), with its predicted time next to uniform context parallelism's.
// The trainer does not place sequences yet (docs/placement.md): this shows what it would do.
#include <cstdio>
#include <map>

#include "launch/commands.h"
#include "parallel/mesh.h"
#include "parallel/placement/planner.h"
#include "runtime/core/precision.h"
#include "runtime/data/batch_loader.h"
#include "runtime/train/trainer.h"

namespace loom {
namespace {

// The document lengths of step `step`'s micro-batches, in the order the loader packs them.
std::vector<int64_t> step_lengths(const Config& c, int64_t step) {
  const TokenDataset data = load_training_data(c);
  BatchLoader loader(data, split_documents(data, Split::kTrain, c.data.val_fraction), c.train.seq_len, c.data.loss_on,
                     static_cast<uint64_t>(c.run.seed));
  const int64_t accumulation = c.accumulation_steps();
  for (int64_t i = 0; i < step * accumulation; ++i) loader.skip();
  std::vector<int64_t> lengths;
  for (int64_t i = 0; i < accumulation; ++i) {
    std::map<int64_t, int64_t> per_doc;
    for (const int64_t doc : loader.next().doc_ids)
      if (doc >= 0) ++per_doc[doc];
    for (const auto& [doc, length] : per_doc) lengths.push_back(length);
  }
  return lengths;
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
  const Config c = load_config(args.config, args.overrides);
  Topology t;
  t.name = "one node";
  if (!args.topology.empty()) t = load_topology(args.topology);
  const auto& p = c.parallel;
  const int64_t world = args.topology.empty() ? (p.dp == ParallelConfig::kAuto ? 1 : p.dp) * p.sp * p.tp : t.world() * p.tp;
  // With a topology, its ranks are the dp x sp replicas (resolve_mesh_shape refuses a dp that disagrees).
  const MeshShape shape = resolve_mesh_shape(c, world);
  const int replicas = static_cast<int>(shape.dp * shape.sp);
  if (args.topology.empty()) t.ranks_per_node = replicas;
  const std::vector<int64_t> lengths = step_lengths(c, args.step);
  const auto bytes = static_cast<int64_t>(c10::elementSize(parse_dtype(c.train.dtype)));
  const CostModel cost = CostModel::llama(c.model.d_model, c.model.n_kv_heads * c.model.head_dim(), c.model.ffn_dim(),
                                          c.model.n_layers, bytes, args.flops_per_s);
  const StepPlan zeppelin = plan_zeppelin(lengths, t, cost, {true, true}, c.train.seq_len);
  const StepPlan uniform = plan_uniform(lengths, t, cost, static_cast<int>(shape.sp));
  int64_t tokens = 0;
  for (const int64_t l : lengths) tokens += l;
  std::printf("loom plan: step %ld of %s, %zu sequences, %ld tokens, on %s (%d nodes x %d ranks, %d NICs each)\n"
              "cost model: d_model %ld, %ld layers, %ld-byte activations, at %.3g FLOP/s per rank; at most %ld tokens "
              "per rank (train.seq_len)\n",
              args.step, args.config.c_str(), lengths.size(), tokens, t.name.c_str(), t.nodes, t.ranks_per_node,
              t.nics_per_node, c.model.d_model, c.model.n_layers, bytes, args.flops_per_s, c.train.seq_len);
  std::printf("%9s %8s  %-11s %s\n", "sequence", "tokens", "span", "ranks");
  for (const Placement& p : zeppelin.placements)
    std::printf("%9ld %8ld  %-11s %s\n", p.sequence, lengths[p.sequence], span_name(p.span), ranks_text(p.ranks).c_str());
  std::printf("predicted step (the cost model's, not a measurement): zeppelin %.4g s%s; uniform context parallelism "
              "over groups of %ld ranks %.4g s; speed-up %.2fx\n",
              zeppelin.step_s, zeppelin.remapped ? " (linear layers remapped)" : "", shape.sp, uniform.step_s,
              uniform.step_s / zeppelin.step_s);
  return 0;
}

}  // namespace loom
