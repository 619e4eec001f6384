#include "runtime/train/weight_update.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <numeric>
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

// Every replica continues from the first one's masters.
void broadcast_masters(MasterWeights& masters, Communicator& replicas) {
  if (replicas.size() == 1) return;
  std::vector<CommHandle> pending;
  for (const auto& [name, m] : masters.masters()) pending.push_back(replicas.broadcast(m.detach(), 0));
  for (auto& h : pending) h.wait();
  masters.write_back();
}

// Optimizer state is named "<parameter>.<what>"; anything else (a step count) is the optimizer's own.
std::string parameter_of(const std::string& state_name) { return state_name.substr(0, state_name.rfind('.')); }

// Muon's whole matrices under tensor parallelism: every rank of tp gathers each split matrix's
// direction, orthogonalises the whole (the same on every rank) and keeps its slice.
MatrixSlices matrix_slices(const TensorLayout& layout, Communicator& tp) {
  if (layout.empty()) return {};
  return {[&layout, &tp](const std::string& name, const torch::Tensor& slice) {
            return gather_shards(slice, shard_of(layout, name), tp);
          },
          [&layout](const std::string& name, const torch::Tensor& whole) { return take_shard(whole, shard_of(layout, name)); }};
}

// Every rank holds the masters and, replicated, the whole optimizer.
class ReplicatedUpdate : public WeightUpdate {
 public:
  ReplicatedUpdate(const Config& config, const Mesh& mesh, Llama& model, const Precision& precision,
                   const TensorLayout& layout)
      : mesh_(mesh), layout_(layout), masters_(model->parameter_list(), precision.master),
        optimizer_(masters_.masters(), config.train, matrix_slices(layout, *mesh.device().tp)) {
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
    masters_.write_back();
  }

  void synchronise() override { broadcast_masters(masters_, *mesh_.device().dp_sp); }

  // Every replica holds the same tensors, so the replicas share the writing. Tensor-parallel slices
  // are gathered whole in the first replica's tensor-parallel group, whose ranks share the writing.
  CheckpointShare share() override {
    NamedTensors weights = masters_.masters(), state = optimizer_.state();
    Communicator* writers = mesh_.device().dp_sp;
    if (mesh_.device().tp->size() > 1) {
      const MeshCoord c = mesh_.coord();
      if (c.dp != 0 || c.sp != 0) return {};
      weights = gather_named(weights, layout_, *mesh_.device().tp);
      state = gather_named(state, layout_, *mesh_.device().tp);
      writers = mesh_.device().tp;
    }
    return {writer_share(weights, writers->rank(), writers->size()), writer_share(state, writers->rank(), writers->size())};
  }

  void load(const std::string& dir, bool with_state) override {
    load_weights(dir, masters_.masters(), layout_);
    masters_.write_back();
    if (!with_state) return;
    const CheckpointTensors stored = checkpoint_tensors(read_checkpoint_meta(dir), "optimizer");
    restore_rng_state(stored);
    NamedTensors state;
    for (const auto& name : stored.names())
      if (name != "rng.torch_cpu") state.emplace_back(name, stored.load(name));
    optimizer_.load_state(take_named(state, layout_));
  }

  std::string describe() const override { return optimizer_.describe(); }

 private:
  bool holds_whole(const std::string& name) const { return !shard_of(layout_, name).split(); }

  const Mesh& mesh_;
  const TensorLayout& layout_;
  MasterWeights masters_;
  TrainingOptimizer optimizer_;
  std::vector<std::unique_ptr<GradientReducer>> reducers_;
};

// ZeRO by whole parameters, for Muon (its Newton-Schulz iteration needs whole matrices): the
// parameters are dealt to the dp x sp replicas by bytes (largest first, each to the least loaded);
// each replica steps only those it owns, keeps only their optimizer state, and broadcasts them
// after the step. Stage 1 all-reduces the gradients, so every replica receives the whole sum;
// stage 2 reduce-scatters the buckets as AdamW's ZeRO does (gradient_reducer.h) and an all-to-all
// then brings each parameter's pieces of the sum to its owner, so a replica keeps its parts and its
// own parameters' gradients only. Masters stay whole on every rank.
class OwnerUpdate : public WeightUpdate {
 public:
  OwnerUpdate(const Config& config, const Mesh& mesh, Llama& model, const Precision& precision)
      : mesh_(mesh),
        stage_(static_cast<int>(config.parallel.zero)),
        masters_(model->parameter_list(), precision.master),
        owners_(balanced_owners(masters_.masters(), mesh.device().dp_sp->size())),
        optimizer_(owned(), config.train) {
    std::vector<torch::Tensor> params;
    for (const auto& [name, p] : model->parameter_list()) params.push_back(p);
    Communicator& replicas = *mesh.device().dp_sp;
    reducer_ = stage_ == 2 ? std::make_unique<GradientReducer>(params, precision.grad_reduce, replicas, bucket_bytes(config), 2)
                           : std::make_unique<GradientReducer>(params, masters_.master_tensors(), precision.grad_reduce,
                                                               replicas, bucket_bytes(config));
  }

  std::vector<GradientReducer*> reducers() override { return {reducer_.get()}; }

  void zero_grads() override { masters_.zero_grads(); }

  void finish_reductions() override {
    if (stage_ == 1) masters_.take_grads();
    reducer_->finish();
    if (stage_ == 2) gather_to_owners();
  }

  // Each parameter's gradient is on its owner alone (at stage 1 on every rank, but only the owner's
  // counts).
  double clip_gradients(double max_norm) override {
    std::vector<torch::Tensor> mine;
    for (const auto& [name, m] : owned()) mine.push_back(m);
    auto squares = torch::tensor({grad_norm_squared(mine)}, torch::kFloat64);
    all_reduce_now(*mesh_.host().dp_sp, squares);
    const double norm = std::sqrt(squares.item<double>());
    scale_gradients(mine, norm, max_norm);
    return norm;
  }

  void step(double lr) override {
    optimizer_.step(lr);
    std::vector<CommHandle> pending;
    for (size_t i = 0; i < owners_.size(); ++i)
      pending.push_back(mesh_.device().dp_sp->broadcast(masters_.masters()[i].second.detach(), static_cast<int>(owners_[i])));
    for (auto& h : pending) h.wait();
    masters_.write_back();
  }

  void synchronise() override { broadcast_masters(masters_, *mesh_.device().dp_sp); }

  // The replicas share the writing of the weights; each writes its own parameters' state, and
  // rank 0 the step counts.
  CheckpointShare share() override {
    Communicator& writers = *mesh_.device().dp_sp;
    TensorPieces mine;
    for (const auto& [name, t] : optimizer_.state())
      if (belongs_to_parameter(name) || writers.rank() == 0) mine.push_back({name, t.sizes().vec(), 0, t});
    return {writer_share(masters_.masters(), writers.rank(), writers.size()), mine};
  }

  // The state of the parameters this rank steps, and the step counts.
  void load(const std::string& dir, bool with_state) override {
    load_weights(dir, masters_.masters());
    masters_.write_back();
    if (!with_state) return;
    const CheckpointTensors stored = checkpoint_tensors(read_checkpoint_meta(dir), "optimizer");
    restore_rng_state(stored);
    std::set<std::string> stepped;
    for (const auto& [name, t] : owned()) stepped.insert(name);
    NamedTensors state;
    for (const auto& name : stored.names())
      if (name != "rng.torch_cpu" && (!belongs_to_parameter(name) || stepped.count(parameter_of(name))))
        state.emplace_back(name, stored.load(name));
    optimizer_.load_state(state);
  }

  std::string describe() const override {
    double state = 0, gradients = 0;
    for (const auto& [name, t] : optimizer_.state()) state += static_cast<double>(bytes_of(t));
    for (const auto& [name, m] : owned()) gradients += m.grad().defined() ? static_cast<double>(bytes_of(m.grad())) : 0.0;
    gradients = stage_ == 2 ? gradients + static_cast<double>(reducer_->held_bytes()) : static_cast<double>(reducer_->held_bytes());
    char text[320];
    std::snprintf(text, sizeof text, "%s; ZeRO stage %d by whole parameters over %d replicas: this rank holds %.3g MB of "
                  "its state (the state of the parameters it steps) and keeps %.3g MB of reduced gradients",
                  optimizer_.describe().c_str(), stage_, mesh_.device().dp_sp->size(), state / 1e6, gradients / 1e6);
    return text;
  }

 private:
  // The masters this rank steps.
  NamedTensors owned() const {
    NamedTensors out;
    const int64_t rank = mesh_.device().dp_sp->rank();
    for (size_t i = 0; i < owners_.size(); ++i)
      if (owners_[i] == rank) out.push_back(masters_.masters()[i]);
    return out;
  }

  bool belongs_to_parameter(const std::string& state_name) const {
    for (const auto& [name, m] : masters_.masters())
      if (name == parameter_of(state_name)) return true;
    return false;
  }

  // Stage 2: every rank holds its part of each bucket's sum; the pieces of each parameter travel to
  // its owner in one all-to-all, in an order every rank derives alike (bucket, member, source rank).
  void gather_to_owners() {
    Communicator& group = *mesh_.device().dp_sp;
    const int n = group.size(), me = group.rank();
    struct Arrival {
      size_t param;
      int64_t begin, count;
    };
    std::vector<std::vector<torch::Tensor>> to(static_cast<size_t>(n));
    std::vector<std::vector<Arrival>> from(static_cast<size_t>(n));
    std::vector<int64_t> send_rows(static_cast<size_t>(n), 0), recv_rows(static_cast<size_t>(n), 0);
    for (int64_t b = 0; b < reducer_->num_buckets(); ++b) {
      const int64_t size = reducer_->padded(b) / n;
      for (size_t k = 0; k < reducer_->params(b).size(); ++k) {
        const size_t param = reducer_->params(b)[k];
        const int64_t begin = reducer_->offsets(b)[k], end = begin + masters_.masters()[param].second.numel();
        const auto owner = static_cast<size_t>(owners_[param]);
        for (int r = 0; r < n; ++r) {
          const int64_t from_at = std::max(r * size, begin), to_at = std::min((r + 1) * size, end);
          if (from_at >= to_at) continue;
          if (r == me) {
            to[owner].push_back(reducer_->part(b).narrow(0, from_at - r * size, to_at - from_at));
            send_rows[owner] += to_at - from_at;
          }
          if (owner == static_cast<size_t>(me)) {
            from[static_cast<size_t>(r)].push_back({param, from_at - begin, to_at - from_at});
            recv_rows[static_cast<size_t>(r)] += to_at - from_at;
          }
        }
      }
    }
    const auto options = reducer_->part(0).options();
    std::vector<torch::Tensor> outgoing;
    for (auto& pieces : to) outgoing.insert(outgoing.end(), pieces.begin(), pieces.end());
    const torch::Tensor send = outgoing.empty() ? torch::empty({0}, options) : torch::cat(outgoing);
    torch::Tensor received = torch::empty({std::accumulate(recv_rows.begin(), recv_rows.end(), int64_t{0})}, options);
    group.all_to_all(send, send_rows, received, recv_rows).wait();
    std::map<size_t, torch::Tensor> sums;
    int64_t at = 0;
    for (const auto& arrivals : from)
      for (const Arrival& a : arrivals) {
        torch::Tensor& sum = sums[a.param];
        if (!sum.defined()) sum = torch::empty({masters_.masters()[a.param].second.numel()}, options);
        sum.narrow(0, a.begin, a.count).copy_(received.narrow(0, at, a.count));
        at += a.count;
      }
    for (auto& [param, sum] : sums) {
      const torch::Tensor& m = masters_.masters()[param].second;
      m.mutable_grad() = sum.view(m.sizes()).to(m.scalar_type());
    }
  }

  const Mesh& mesh_;
  int stage_;
  MasterWeights masters_;
  std::vector<int64_t> owners_;  // the replica that steps each master
  TrainingOptimizer optimizer_;
  std::unique_ptr<GradientReducer> reducer_;
};

// ZeRO's pieces of tensor-parallel slices (flat ranges of a slice) as pieces of the whole tensors:
// a part of a matrix split by columns becomes one piece per row it crosses.
TensorPieces as_whole_pieces(const TensorPieces& slice_pieces, const TensorLayout& layout) {
  TensorPieces out;
  for (const TensorPiece& p : slice_pieces) {
    const TensorShard shard = shard_of(layout, p.name);
    const std::vector<int64_t> whole = whole_shape(shard, p.shape);
    for (const FlatRun& run : whole_runs(shard, whole, p.begin, p.values.numel()))
      out.push_back({p.name, whole, run.whole_begin, p.values.narrow(0, run.shard_begin - p.begin, run.count)});
  }
  return out;
}

// Ranges of tensor-parallel slices read from ranges of the whole tensors `read` gives.
ZeroOptimizer::ReadRange slice_ranges(ZeroOptimizer::ReadRange read, const TensorLayout& layout) {
  return [read, &layout](const std::string& name, const std::vector<int64_t>& shape, int64_t begin, int64_t count) {
    const TensorShard shard = shard_of(layout, name);
    const std::vector<int64_t> whole = whole_shape(shard, shape);
    std::vector<torch::Tensor> runs;
    for (const FlatRun& run : whole_runs(shard, whole, begin, count)) runs.push_back(read(name, whole, run.whole_begin, run.count));
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
  if (zero) return std::make_unique<OwnerUpdate>(config, mesh, model, precision);
  return std::make_unique<ReplicatedUpdate>(config, mesh, model, precision, layout);
}

}  // namespace loom
