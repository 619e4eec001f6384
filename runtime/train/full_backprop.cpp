#include "runtime/train/full_backprop.h"


namespace loom {

Backpropagated FullBackprop::run(const MicroBatch& batch, double denominator) {
  SequenceShard shard = batch.ring ? shard_over(batch.tokens, *batch.ring)
                        : sp_ == 1 ? whole_sequence(batch.tokens)
                                   : shard_sequence(batch.tokens, sp_, sp_rank_);
  const int64_t ranks = shard.sharded() ? shard.layout->ranks : 1;
  shard.tokens = on_device(shard.tokens, model_->device());
  Backpropagated result;
  result.flops = model_->training_flops(batch.tokens) / static_cast<double>(ranks);
  result.tokens = (shard.tokens.doc_ids >= 0).sum().item<int64_t>();
  const auto loss = model_->loss(shard, head_rows_);
  // Armed now, the reducer starts each bucket's all-reduce as soon as its gradients are complete,
  // while the backward goes on with earlier layers; stage 2 reduces every micro-batch's.
  for (auto* r : reducers_)
    if (batch.last || r->reduces_every_backward()) r->arm();
  (loss / denominator).backward();
  result.loss = loss.item<double>();
  return result;
}

}  // namespace loom
