#include "runtime/train/step_placement.h"

#include <algorithm>

#include "parallel/placement/planner.h"
#include "runtime/core/error.h"
#include "runtime/core/precision.h"

namespace loom {
namespace {

PackedTensors concatenate(const std::vector<PackedTensors>& docs) {
  std::vector<torch::Tensor> tokens, positions, doc_ids, labels;
  int64_t label_count = 0;
  for (size_t i = 0; i < docs.size(); ++i) {
    tokens.push_back(docs[i].tokens);
    positions.push_back(docs[i].positions);
    doc_ids.push_back(torch::full_like(docs[i].doc_ids, static_cast<int64_t>(i)));
    labels.push_back(docs[i].labels);
    label_count += docs[i].label_count;
  }
  return {torch::cat(tokens), torch::cat(positions), torch::cat(doc_ids), torch::cat(labels), label_count};
}

// Whole documents packed in order into sequences of at most `cap` tokens (none is longer), so a
// rank's forwards stay within what uniform placement would hold.
std::vector<PackedTensors> pack(const std::vector<PackedTensors>& docs, int64_t cap) {
  std::vector<PackedTensors> packs;
  std::vector<PackedTensors> current;
  int64_t used = 0;
  for (const PackedTensors& d : docs) {
    const int64_t length = d.tokens.size(0);
    if (used + length > cap && !current.empty()) {
      packs.push_back(concatenate(current));
      current.clear();
      used = 0;
    }
    current.push_back(d);
    used += length;
  }
  if (!current.empty()) packs.push_back(concatenate(current));
  return packs;
}

}  // namespace

Topology placement_topology(const Config& config, int64_t replicas) {
  Topology t;
  t.name = "one node";
  t.ranks_per_node = static_cast<int>(replicas);
  if (config.parallel.topology.empty()) return t;
  t = load_topology(config.parallel.topology);
  check(t.world() == replicas, config.where("parallel.topology") + " '" + config.parallel.topology + "' has " +
                                   std::to_string(t.nodes) + " x " + std::to_string(t.ranks_per_node) + " = " +
                                   std::to_string(t.world()) + " ranks, but the run's dp x sp group has " +
                                   std::to_string(replicas) + "; launch that many ranks or use a topology of this job");
  return t;
}

CostModel placement_cost(const Config& config, const Topology& topology) {
  const auto& m = config.model;
  const auto bytes = static_cast<int64_t>(c10::elementSize(parse_dtype(config.train.dtype)));
  return CostModel::llama(m.d_model, m.n_kv_heads * m.head_dim(), m.ffn_dim(), m.n_layers, bytes, topology.rank_flops_per_s,
                         topology.attention_flops_per_s);
}

int64_t placement_cap(const Config& config) { return std::max<int64_t>(1, config.train.seq_len / config.parallel.sp); }

std::vector<PackedTensors> documents_of(const PackedTensors& packed) {
  const torch::Tensor ids = packed.doc_ids.contiguous();
  const int64_t* doc = ids.data_ptr<int64_t>();
  const int64_t n = ids.size(0);
  std::vector<PackedTensors> docs;
  for (int64_t begin = 0, end = 0; begin < n; begin = end) {
    end = begin + 1;
    if (doc[begin] < 0) continue;
    while (end < n && doc[end] == doc[begin]) ++end;
    const auto take = [&](const torch::Tensor& t) { return t.narrow(0, begin, end - begin).clone(); };
    PackedTensors d{take(packed.tokens), take(packed.positions), torch::zeros({end - begin}, torch::kInt64),
                    take(packed.labels), 0};
    d.label_count = (d.labels >= 0).sum().item<int64_t>();
    docs.push_back(std::move(d));
  }
  return docs;
}

std::vector<int64_t> next_step_lengths(BatchLoader& loader, int64_t micro_batches) {
  std::vector<int64_t> lengths;
  for (int64_t a = 0; a < micro_batches; ++a)
    for (const PackedTensors& d : documents_of(to_tensors(loader.next()))) lengths.push_back(d.tokens.size(0));
  return lengths;
}

StepPlacement::StepPlacement(const Config& config, const Mesh& mesh)
    : topology_(placement_topology(config, mesh.host().dp_sp->size())),
      cost_(placement_cost(config, topology_)),
      cap_(placement_cap(config)),
      rank_(mesh.host().dp_sp->rank()),
      rings_(*mesh.host().dp_sp, topology_, [&mesh](Communicator& host) { return mesh.device_group(host); }) {}

StepWork StepPlacement::place(const std::vector<PackedTensors>& step, int64_t first_index) const {
  StepWork work;
  std::vector<PackedTensors> docs;
  for (const PackedTensors& batch : step) {
    work.labels += batch.label_count;
    for (PackedTensors& d : documents_of(batch)) docs.push_back(std::move(d));
  }
  std::vector<int64_t> lengths;
  for (const PackedTensors& d : docs) lengths.push_back(d.tokens.size(0));
  const StepPlan plan = plan_zeppelin(lengths, topology_, cost_, {}, cap_);
  std::vector<PackedTensors> whole;
  for (const Placement& p : plan.placements) {
    work.rings += p.ranks.size() > 1;
    if (std::find(p.ranks.begin(), p.ranks.end(), rank_) == p.ranks.end()) continue;
    if (p.ranks.size() == 1) whole.push_back(docs[p.sequence]);
    else work.micro.push_back({docs[p.sequence], first_index, false, &rings_.at(p.ranks)});
  }
  for (PackedTensors& packed : pack(whole, cap_)) work.micro.push_back({std::move(packed), first_index, false, nullptr});
  if (!work.micro.empty()) work.micro.back().last = true;
  return work;
}

}  // namespace loom
