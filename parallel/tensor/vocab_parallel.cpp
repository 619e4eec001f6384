#include "parallel/tensor/vocab_parallel.h"

#include "runtime/core/precision.h"

namespace loom {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

struct VocabParallelLossFn : torch::autograd::Function<VocabParallelLossFn> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& hidden, const torch::Tensor& weight,
                               const torch::Tensor& labels, int64_t begin, Communicator* tp) {
    const auto logits = torch::matmul(hidden, weight.t()).to(accumulation_dtype(hidden.scalar_type()));
    auto max = std::get<0>(logits.max(-1, /*keepdim=*/true));
    all_reduce_now(*tp, max, ReduceOp::kMax);
    const auto exp = torch::exp(logits - max);
    auto total = exp.sum(-1, /*keepdim=*/true);
    const auto local = labels - begin;
    const auto mine = (local >= 0) & (local < weight.size(0));
    auto target = logits.gather(1, local.clamp(0, weight.size(0) - 1).unsqueeze(1)) * mine.unsqueeze(1);
    auto sums = torch::cat({total, target}, 1);
    all_reduce_now(*tp, sums);
    total = sums.narrow(1, 0, 1);
    target = sums.narrow(1, 1, 1);
    const auto labelled = (labels >= 0).unsqueeze(1);
    const auto loss = ((torch::log(total) + max - target) * labelled).sum();
    // The gradient of the loss in this rank's slice of the logits: softmax minus the one-hot target.
    auto dlogits = exp / total;
    dlogits.scatter_add_(1, local.clamp(0, weight.size(0) - 1).unsqueeze(1), -mine.unsqueeze(1).to(dlogits.scalar_type()));
    dlogits = (dlogits * labelled).to(hidden.scalar_type());
    ctx->save_for_backward({hidden, weight, dlogits});
    return loss;
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto s = ctx->get_saved_variables();
    const auto d = s[2] * grads[0].to(s[2].scalar_type());
    return {torch::matmul(d, s[1]), torch::matmul(d.t(), s[0]), {}, {}, {}};
  }
};

}  // namespace

torch::Tensor vocab_parallel_embedding(const torch::Tensor& tokens, const torch::Tensor& weight, const TensorShard& shard) {
  const auto local = tokens - shard.begin;
  const auto mine = (local >= 0) & (local < shard.size);
  const auto rows = torch::embedding(weight, local.clamp(0, shard.size - 1));
  return rows * mine.unsqueeze(1).to(rows.scalar_type());
}

torch::Tensor vocab_parallel_loss(const torch::Tensor& hidden, const torch::Tensor& weight, const torch::Tensor& labels,
                                  const TensorShard& shard, Communicator& tp) {
  return VocabParallelLossFn::apply(hidden, weight, labels, shard.begin, &tp);
}

torch::Tensor gather_vocab(const torch::Tensor& logits, const TensorShard& shard, Communicator& tp) {
  torch::NoGradGuard no_grad;
  TensorShard columns = shard;
  columns.dim = 1;
  return gather_shards(logits, columns, tp);
}

}  // namespace loom
