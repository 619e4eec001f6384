#include "runtime/model/parallelize.h"

#include "parallel/comm/mappings.h"
#include "parallel/sequence/halo_attention.h"
#include "parallel/sequence/ring_attention.h"
#include "parallel/sequence/token_ring_attention.h"
#include "parallel/tensor/reduce_add_norm.h"
#include "runtime/core/error.h"

namespace loom {
namespace {

enum class Algorithm { kRing, kTokenRing, kHalo };

// Attention over the sp group for a sequence shard (or over the ring the shard names); a whole
// sequence on this rank attends locally.
class SequenceParallelAttention : public CoreAttention {
 public:
  SequenceParallelAttention(Algorithm algorithm, int64_t window, const ParallelPlan& plan)
      : algorithm_(algorithm), local_(window), sp_ring_{plan.sp, plan.sp_back, plan.sp_sync} {}

  torch::Tensor attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, double scale,
                       const SequenceShard& input) override {
    if (!input.sharded()) return local_.attend(q, k, v, scale, input);
    const Ring& ring = input.ring ? *input.ring : sp_ring_;
    if (algorithm_ == Algorithm::kRing) return ring_attention(q, k, v, *input.layout, scale, *ring.forward);
    if (algorithm_ == Algorithm::kTokenRing)
      return token_ring_attention(q, k, v, *input.layout, scale, *ring.forward, *ring.back);
    SequenceLayout windowed = *input.layout;
    windowed.window = local_.window();
    return halo_attention(q, k, v, windowed, scale, *ring.forward);
  }

 private:
  Algorithm algorithm_;
  LocalAttention local_;
  Ring sp_ring_;  // the sp group's, for shards that name no ring of their own
};

// The residual boundary with sequence-sharded norms: `h` is this rank's rows of the stream, `delta`
// this rank's partial sums of every row.
class TensorParallelResidualNorm : public ResidualNorm {
 public:
  explicit TensorParallelResidualNorm(Communicator& tp) : tp_(tp) {}
  Residual apply(const torch::Tensor& h, const torch::Tensor& delta, RMSNormImpl& norm) override {
    const ReducedNorm r = reduce_add_norm(delta, h, norm.weight, norm.eps(), tp_);
    return {r.residual, r.normed};
  }

 private:
  Communicator& tp_;
};

bool ends_with(const std::string& name, const std::string& suffix) {
  return name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
}

TensorLayout split_tensors(Llama& model, Communicator& tp) {
  check(model->config().lact.every == 0, "parallel.tp > 1 with LaCT layers is not supported yet; use parallel.tp: 1");
  TensorLayout layout;
  torch::NoGradGuard no_grad;
  for (auto& [name, p] : model->parameter_list()) {
    const TensorShard shard = tensor_parallel_shard(name, p.sizes(), tp.size(), tp.rank());
    if (!shard.split()) continue;
    p.set_data(take_shard(p.detach(), shard));
    layout[name] = shard;
  }
  for (int64_t i = 0; i < model->num_layers(); ++i) {
    AttentionImpl& attention = *model->layer(i).self_attn;
    attention.heads /= tp.size();
    attention.kv_heads /= tp.size();
  }
  model->split_vocabulary(layout.at("model.embed_tokens.weight"), tp);
  model->set_residual_norm(std::make_shared<TensorParallelResidualNorm>(tp));
  return layout;
}

}  // namespace

TensorShard tensor_parallel_shard(const std::string& name, c10::IntArrayRef shape, int64_t ranks, int64_t rank) {
  for (const char* column : {"q_proj.weight", "k_proj.weight", "v_proj.weight", "gate_proj.weight", "up_proj.weight"})
    if (ends_with(name, column)) return split_evenly(0, shape[0], ranks, rank);
  if (name == "model.embed_tokens.weight" || name == "lm_head.weight") return split_evenly(0, shape[0], ranks, rank);
  if (ends_with(name, "o_proj.weight") || ends_with(name, "down_proj.weight")) return split_evenly(1, shape[1], ranks, rank);
  return {};  // the norms: every rank holds them
}

TensorLayout parallelize(Llama& model, const ParallelPlan& plan) {
  const std::string& checkpoint = plan.activation_checkpoint;
  check(checkpoint == "none" || checkpoint == "selective" || checkpoint == "full",
        "unknown activation checkpointing '" + checkpoint + "' (none, selective or full)");
  for (int64_t i = 0; i < model->num_layers(); ++i) {
    model->layer(i).recompute = checkpoint == "full";
    model->layer(i).mlp->recompute_product = checkpoint == "selective";
  }
  const TensorLayout layout = plan.tp && plan.tp->size() > 1 ? split_tensors(model, *plan.tp) : TensorLayout{};
  if (!layout.empty() && plan.token_weave.worker) {
    check(checkpoint != "full", "token splitting and full activation checkpointing do not combine in this version");
    check(plan.token_weave.tp && plan.token_weave.tp->size() == plan.tp->size(),
          "token splitting needs its own communicator over the tensor-parallel ranks");
    model->weave_tokens(plan.token_weave);
  }
  const std::string& algorithm = plan.sequence_attention;
  check(algorithm == "local" || algorithm == "ring" || algorithm == "token_ring",
        "unknown sequence-parallel attention '" + algorithm + "'");
  if (algorithm == "local") return layout;
  check(plan.sp && plan.sp_back && plan.sp_sync, "a sequence-parallel plan needs its sp, sp_back and sp_sync communicators");
  for (int64_t i = 0; i < model->num_layers(); ++i) {
    DecoderLayerImpl& layer = model->layer(i);
    if (layer.lact) {
      // A window reaches a few neighbouring rows: exchanging that halo moves far fewer bytes than
      // ring or TokenRing would, whichever of them the full-attention layers use.
      layer.lact->core = std::make_shared<SequenceParallelAttention>(Algorithm::kHalo, model->config().lact.window, plan);
      Communicator* sync = plan.sp_sync;
      layer.lact->update_sum = [sync](const torch::Tensor& t, const Ring* ring) {
        return differentiable::all_reduce(t, ring ? *ring->sync : *sync);
      };
    } else {
      layer.self_attn->core = std::make_shared<SequenceParallelAttention>(
          algorithm == "ring" ? Algorithm::kRing : Algorithm::kTokenRing, 0, plan);
    }
  }
  return layout;
}

}  // namespace loom
