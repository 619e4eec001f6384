#include "runtime/model/parallelize.h"

#include "parallel/comm/mappings.h"
#include "parallel/sequence/halo_attention.h"
#include "parallel/sequence/ring_attention.h"
#include "parallel/sequence/token_ring_attention.h"
#include "runtime/core/error.h"

namespace loom {
namespace {

enum class Algorithm { kRing, kTokenRing, kHalo };

// Attention over the sp group for a sequence shard; a whole sequence on this rank attends locally.
class SequenceParallelAttention : public CoreAttention {
 public:
  SequenceParallelAttention(Algorithm algorithm, int64_t window, const ParallelPlan& plan)
      : algorithm_(algorithm), local_(window), plan_(plan) {}

  torch::Tensor attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, double scale,
                       const SequenceShard& input) override {
    if (!input.sharded()) return local_.attend(q, k, v, scale, input);
    if (algorithm_ == Algorithm::kRing) return ring_attention(q, k, v, *input.layout, scale, *plan_.sp);
    if (algorithm_ == Algorithm::kTokenRing) return token_ring_attention(q, k, v, *input.layout, scale, *plan_.sp, *plan_.sp_back);
    SequenceLayout windowed = *input.layout;
    windowed.window = local_.window();
    return halo_attention(q, k, v, windowed, scale, *plan_.sp);
  }

 private:
  Algorithm algorithm_;
  LocalAttention local_;
  ParallelPlan plan_;
};

}  // namespace

void parallelize(Llama& model, const ParallelPlan& plan) {
  for (int64_t i = 0; i < model->num_layers(); ++i) model->layer(i).recompute = plan.activation_checkpoint;
  const std::string& algorithm = plan.sequence_attention;
  check(algorithm == "local" || algorithm == "ring" || algorithm == "token_ring",
        "unknown sequence-parallel attention '" + algorithm + "'");
  if (algorithm == "local") return;
  check(plan.sp && plan.sp_back && plan.sp_sync, "a sequence-parallel plan needs its sp, sp_back and sp_sync communicators");
  for (int64_t i = 0; i < model->num_layers(); ++i) {
    DecoderLayerImpl& layer = model->layer(i);
    if (layer.lact) {
      // A window reaches a few neighbouring rows: exchanging that halo moves far fewer bytes than
      // ring or TokenRing would, whichever of them the full-attention layers use.
      layer.lact->core = std::make_shared<SequenceParallelAttention>(Algorithm::kHalo, model->config().lact.window, plan);
      Communicator* sync = plan.sp_sync;
      layer.lact->update_sum = [sync](const torch::Tensor& t) { return differentiable::all_reduce(t, *sync); };
    } else {
      layer.self_attn->core = std::make_shared<SequenceParallelAttention>(
          algorithm == "ring" ? Algorithm::kRing : Algorithm::kTokenRing, 0, plan);
    }
  }
}

}  // namespace loom
