#include "runtime/train/weight_update.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <set>

#include "optim/master_weights.h"
#include "optim/training_optimizer.h"
#include "parallel/data/zero_optimizer.h"
#include "runtime/core/error.h"
#include "runtime/train/checkpoint.h"

namespace loom {
namespace {

int64_t bucket_bytes(const Config& config) { return static_cast<int64_t>(config.parallel.bucket_mb * (1 << 20)); }

// Ranges of a checkpoint's tensors, each checked against the shape this model gives it.
ZeroOptimizer::ReadRange ranges_of(const CheckpointTensors& stored, const std::string& what) {
  return [&stored, what](const std::string& name, const std::vector<int64_t>& shape, int64_t begin, int64_t count) {
    check(stored.contains(name), what + " of the checkpoint has no '" + name +
                                     "': it is from another model or was trained with another train.optimizer");
    stored.check_shape(name, shape);
    return stored.load_range(name, begin, count);
  };
}

// The masters this rank's optimizer steps: all of them, or those `owners` gives it.
NamedTensors owned(const NamedTensors& masters, const std::vector<int64_t>& owners, int64_t rank) {
  if (owners.empty()) return masters;
  NamedTensors out;
  for (size_t i = 0; i < masters.size(); ++i)
    if (owners[i] == rank) out.push_back(masters[i]);
  return out;
}

// Every rank holds the masters and, replicated, the whole optimizer. With `by_parameters` (ZeRO
// stage 1 for Muon, whose Newton-Schulz needs whole matrices) each replica steps only the whole
// parameters it owns (balanced by bytes) and keeps only their optimizer state; every rank still
// receives the whole summed gradient, and each parameter is then broadcast from its owner.
class ReplicatedUpdate : public WeightUpdate {
 public:
  ReplicatedUpdate(const Config& config, const Mesh& mesh, Llama& model, const Precision& precision,
                   const TensorLayout& layout, bool by_parameters)
      : mesh_(mesh),
        layout_(layout),
        masters_(model->parameter_list(), precision.master),
        owners_(by_parameters ? balanced_owners(masters_.masters(), mesh.device().dp_sp->size()) : std::vector<int64_t>{}),
        optimizer_(owned(masters_.masters(), owners_, mesh.device().dp_sp->rank()), config.train) {
    // Gradients are summed in the policy's reduction dtype straight into the masters' gradients:
    // the tensor-parallel slices over the replicas of the same slice, what every rank holds whole
    // over every rank (each rank's gradient of a norm is its own rows' share).
    const auto add = [&](Communicator& group, bool whole) {
      std::vector<torch::Tensor> params, targets;
      const auto all = model->parameter_list();
      for (size_t i = 0; i < all.size(); ++i) {
        if (!layout_.empty() && holds_whole(all[i].first) != whole) continue;
        params.push_back(all[i].second);
        targets.push_back(masters_.masters()[i].second);
      }
      if (group.size() > 1 && !params.empty())
        reducers_.push_back(std::make_unique<GradientReducer>(params, targets, precision.grad_reduce, group, bucket_bytes(config)));
    };
    add(*mesh.device().dp_sp, false);
    if (!layout_.empty()) add(*mesh.device().world, true);
  }

  std::vector<GradientReducer*> reducers() override {
    std::vector<GradientReducer*> out;
    for (auto& r : reducers_) out.push_back(r.get());
    return out;
  }

  void zero_grads() override { masters_.zero_grads(); }

  void finish_reductions() override {
    masters_.take_grads();
    for (auto& r : reducers_) r->finish();
  }

  // The slices' squares are summed over the tensor-parallel group; what every rank holds whole
  // already holds the sum over every rank.
  double clip_gradients(double max_norm) override {
    std::vector<torch::Tensor> whole, sliced;
    for (const auto& [name, m] : masters_.masters()) (holds_whole(name) ? whole : sliced).push_back(m);
    auto squares = torch::tensor({grad_norm_squared(sliced)}, torch::kFloat64);
    if (mesh_.shape().tp > 1) all_reduce_now(*mesh_.host().tp, squares);
    const double norm = std::sqrt(grad_norm_squared(whole) + squares.item<double>());
    scale_gradients(masters_.master_tensors(), norm, max_norm);
    return norm;
  }

  void step(double lr) override {
    optimizer_.step(lr);
    if (!owners_.empty()) {
      std::vector<CommHandle> pending;
      for (size_t i = 0; i < owners_.size(); ++i)
        pending.push_back(mesh_.device().dp_sp->broadcast(masters_.masters()[i].second.detach(), owners_[i]));
      for (auto& h : pending) h.wait();
    }
    masters_.write_back();
  }

  void synchronise() override {
    Communicator& replicas = *mesh_.device().dp_sp;
    if (replicas.size() == 1) return;
    std::vector<CommHandle> pending;
    for (const auto& [name, m] : masters_.masters()) pending.push_back(replicas.broadcast(m.detach(), 0));
    for (auto& h : pending) h.wait();
    masters_.write_back();
  }

  // Every replica holds the same tensors, so the replicas share the writing. Tensor-parallel slices
  // are gathered whole in the first replica's tensor-parallel group, whose ranks share the writing.
  // By parameters, each rank writes its own parameters' state and rank 0 the step count.
  CheckpointShare share() override {
    NamedTensors weights = masters_.masters(), state = optimizer_.state();
    Communicator* writers = mesh_.device().dp_sp;
    if (!owners_.empty()) {
      TensorPieces mine;
      for (const auto& [name, t] : state)
        if (belongs_to_parameter(name) || writers->rank() == 0) mine.push_back({name, t.sizes().vec(), 0, t});
      return {writer_share(weights, writers->rank(), writers->size()), mine};
    }
    if (mesh_.device().tp->size() > 1) {
      const MeshCoord c = mesh_.coord();
      if (c.dp != 0 || c.sp != 0) return {};
      weights = gather_named(weights, layout_, *mesh_.device().tp);
      state = gather_named(state, layout_, *mesh_.device().tp);
      writers = mesh_.device().tp;
    }
    return {writer_share(weights, writers->rank(), writers->size()), writer_share(state, writers->rank(), writers->size())};
  }

  // The state of the parameters this rank steps, and the step counts.
  void load(const std::string& dir, bool with_state) override {
    load_weights(dir, masters_.masters(), layout_);
    masters_.write_back();
    if (!with_state) return;
    const CheckpointTensors stored = checkpoint_tensors(read_checkpoint_meta(dir), "optimizer");
    restore_rng_state(stored);
    std::set<std::string> stepped;
    for (const auto& [name, t] : owned(masters_.masters(), owners_, mesh_.device().dp_sp->rank())) stepped.insert(name);
    NamedTensors state;
    for (const auto& name : stored.names())
      if (name != "rng.torch_cpu" && (!belongs_to_parameter(name) || stepped.count(parameter_of(name))))
        state.emplace_back(name, stored.load(name));
    optimizer_.load_state(take_named(state, layout_));
  }

  std::string describe() const override {
    if (owners_.empty()) return optimizer_.describe();
    double bytes = 0;
    for (const auto& [name, t] : optimizer_.state()) bytes += static_cast<double>(t.numel() * t.element_size());
    char text[200];
    std::snprintf(text, sizeof text, "%s; ZeRO stage 1 by whole parameters over %d replicas: this rank holds %.3g MB of "
                  "its state (the state of the parameters it steps)", optimizer_.describe().c_str(),
                  mesh_.device().dp_sp->size(), bytes / 1e6);
    return text;
  }

 private:
  bool holds_whole(const std::string& name) const { return !shard_of(layout_, name).split(); }
  // Optimizer state is named "<parameter>.<what>"; anything else (a step count) is the optimizer's own.
  static std::string parameter_of(const std::string& state_name) { return state_name.substr(0, state_name.rfind('.')); }
  bool belongs_to_parameter(const std::string& state_name) const {
    for (const auto& [name, m] : masters_.masters())
      if (name == parameter_of(state_name)) return true;
    return false;
  }

  const Mesh& mesh_;
  const TensorLayout& layout_;
  MasterWeights masters_;
  std::vector<int64_t> owners_;  // by parameters: the replica that steps each master; empty: every rank
  TrainingOptimizer optimizer_;
  std::vector<std::unique_ptr<GradientReducer>> reducers_;
};

// ZeRO's pieces of tensor-parallel slices (flat ranges of a slice) as pieces of the whole tensors:
// a part of a matrix split by columns becomes one piece per row it crosses.
TensorPieces as_whole_pieces(const TensorPieces& slice_pieces, const TensorLayout& layout) {
  TensorPieces out;
  for (const TensorPiece& p : slice_pieces) {
    const TensorShard shard = shard_of(layout, p.name);
    std::vector<int64_t> whole_shape = p.shape;
    if (shard.split()) whole_shape[static_cast<size_t>(shard.dim)] = shard.whole;
    for (const FlatRun& run : whole_runs(shard, whole_shape, p.begin, p.values.numel()))
      out.push_back({p.name, whole_shape, run.whole_begin, p.values.narrow(0, run.shard_begin - p.begin, run.count)});
  }
  return out;
}

// Ranges of tensor-parallel slices read from ranges of the whole tensors `read` gives.
ZeroOptimizer::ReadRange slice_ranges(ZeroOptimizer::ReadRange read, const TensorLayout& layout) {
  return [read, &layout](const std::string& name, const std::vector<int64_t>& shape, int64_t begin, int64_t count) {
    const TensorShard shard = shard_of(layout, name);
    std::vector<int64_t> whole_shape = shape;
    if (shard.split()) whole_shape[static_cast<size_t>(shard.dim)] = shard.whole;
    std::vector<torch::Tensor> runs;
    for (const FlatRun& run : whole_runs(shard, whole_shape, begin, count))
      runs.push_back(read(name, whole_shape, run.whole_begin, run.count));
    return runs.size() == 1 ? runs.front() : torch::cat(runs);
  };
}

// Each of the dp x sp replicas holds 1/n of the masters and AdamW state. With tensor parallelism
// the parameters come in two kinds, each sharded over the ranks that hold it alike: this rank's
// tp slices over the dp x sp replicas of the slice, and the tensors every rank holds whole (the
// norms, whose gradient is every rank's share of its rows) over all ranks.
class ZeroUpdate : public WeightUpdate {
 public:
  ZeroUpdate(const Config& config, const Mesh& mesh, Llama& model, const Precision& precision, const TensorLayout& layout)
      : mesh_(mesh), model_(model), layout_(layout) {
    const AdamWOptions adamw{config.train.beta1, config.train.beta2, config.train.eps, config.train.weight_decay};
    const auto add = [&](const NamedTensors& params, Communicator& group, bool sliced) {
      if (params.empty()) return;
      parts_.push_back({std::make_unique<ZeroOptimizer>(params, static_cast<int>(config.parallel.zero), adamw,
                                                        precision.master, precision.grad_reduce, group, bucket_bytes(config)),
                        sliced});
    };
    if (layout.empty()) {
      add(model->parameter_list(), *mesh.device().dp_sp, false);
    } else {
      NamedTensors sliced, whole;
      for (const auto& named : model->parameter_list()) (shard_of(layout, named.first).split() ? sliced : whole).push_back(named);
      add(sliced, *mesh.device().dp_sp, true);
      add(whole, *mesh.device().world, false);
    }
  }

  std::vector<GradientReducer*> reducers() override {
    std::vector<GradientReducer*> out;
    for (auto& p : parts_) out.push_back(&p.zero->reducer());
    return out;
  }

  void zero_grads() override {
    for (auto& [name, p] : model_->parameter_list()) p.mutable_grad() = torch::Tensor();
  }

  void finish_reductions() override {
    for (auto& p : parts_) p.zero->reducer().finish();
  }

  // Every element's square is on exactly one rank: a slice's part on one of its replicas, a whole
  // tensor's part on one of all ranks.
  double clip_gradients(double max_norm) override {
    double sum = 0;
    for (const auto& p : parts_) sum += p.zero->grad_norm_squared();
    auto squares = torch::tensor({sum}, torch::kFloat64);
    all_reduce_now(*mesh_.host().world, squares);
    const double norm = std::sqrt(squares.item<double>());
    for (auto& p : parts_) p.zero->scale_gradients(norm, max_norm);
    return norm;
  }

  void step(double lr) override {
    for (auto& p : parts_) p.zero->step(lr);
  }

  // Weights loaded from a checkpoint are the same on every rank already, and the masters' parts
  // came from the file at full precision; seeded ones are taken from the first replica.
  void synchronise() override {
    if (loaded_) return;
    Communicator& replicas = *mesh_.device().dp_sp;
    std::vector<CommHandle> pending;
    for (const auto& [name, p] : model_->parameter_list()) pending.push_back(replicas.broadcast(p.detach(), 0));
    for (auto& h : pending) h.wait();
    for (auto& p : parts_) p.zero->take_parameters();
  }

  // Pieces of the whole tensors; the step count once, from the part whose group is every rank
  // (or the replicas, without tensor parallelism).
  CheckpointShare share() override {
    CheckpointShare out;
    for (const auto& p : parts_) {
      TensorPieces weights = p.zero->master_pieces(), state = p.zero->state_pieces();
      if (p.sliced) {
        state.erase(std::remove_if(state.begin(), state.end(), [](const TensorPiece& t) { return t.name == "adamw.steps"; }),
                    state.end());
        weights = as_whole_pieces(weights, layout_);
        state = as_whole_pieces(state, layout_);
      }
      out.model.insert(out.model.end(), weights.begin(), weights.end());
      out.optimizer.insert(out.optimizer.end(), state.begin(), state.end());
    }
    return out;
  }

  // Each rank reads the ranges of its own parts.
  void load(const std::string& dir, bool with_state) override {
    const CheckpointMeta meta = read_checkpoint_meta(dir);
    const CheckpointTensors weights = checkpoint_tensors(meta, "model");
    const CheckpointTensors state = with_state ? checkpoint_tensors(meta, "optimizer") : weights;
    if (with_state) restore_rng_state(state);
    for (auto& p : parts_) {
      const auto read = [&](const CheckpointTensors& stored, const std::string& what) {
        const ZeroOptimizer::ReadRange whole = ranges_of(stored, what);
        return p.sliced ? slice_ranges(whole, layout_) : whole;
      };
      p.zero->load(read(weights, "the model"), with_state ? read(state, "the optimizer state") : ZeroOptimizer::ReadRange());
    }
    loaded_ = true;
  }

  std::string describe() const override {
    double state = 0, gradients = 0;
    for (const auto& p : parts_) {
      state += static_cast<double>(p.zero->state_bytes());
      gradients += static_cast<double>(p.zero->gradient_bytes());
    }
    char text[240];
    std::snprintf(text, sizeof text, "adamw, ZeRO stage %d over %d replicas: this rank holds %.3g MB of its state "
                  "(moments, and masters wider than the parameters) and keeps %.3g MB of reduced gradients",
                  parts_.front().zero->stage(), mesh_.device().dp_sp->size(), state / 1e6, gradients / 1e6);
    return text;
  }

 private:
  struct Part {
    std::unique_ptr<ZeroOptimizer> zero;
    bool sliced;  // tensor-parallel slices, whose pieces are mapped into the whole tensors
  };

  const Mesh& mesh_;
  Llama& model_;
  const TensorLayout& layout_;
  std::vector<Part> parts_;
  bool loaded_ = false;
};

}  // namespace

std::unique_ptr<WeightUpdate> make_weight_update(const Config& config, const Mesh& mesh, Llama& model,
                                                 const Precision& precision, const TensorLayout& layout) {
  // One replica has nothing to share the state with.
  const bool zero = config.parallel.zero > 0 && mesh.device().dp_sp->size() > 1;
  if (zero && config.train.optimizer == "adamw") return std::make_unique<ZeroUpdate>(config, mesh, model, precision, layout);
  return std::make_unique<ReplicatedUpdate>(config, mesh, model, precision, layout, zero);
}

}  // namespace loom
