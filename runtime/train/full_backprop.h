// Full backprop: one forward and one backward over the micro-batch. With sequence parallelism each
// rank takes its zigzag shard of the sequence (parallel/sequence/sequence_shard.h) and the layers
// attend over the sp group as parallelize() installed, or over the micro-batch's ring where a
// placement gave it one; the FLOPs are shared evenly.
#pragma once
#include "parallel/data/gradient_reducer.h"
#include "runtime/model/llama.h"
#include "runtime/train/backprop.h"

namespace loom {

class FullBackprop : public Backprop {
 public:
  // head_rows: the LM head and loss take that many rows of logits at a time (0: all at once).
  FullBackprop(Llama& model, int64_t sp, int64_t sp_rank, int64_t head_rows, std::vector<GradientReducer*> reducers)
      : model_(model), sp_(sp), sp_rank_(sp_rank), head_rows_(head_rows), reducers_(std::move(reducers)) {}
  Backpropagated run(const MicroBatch& batch, double denominator) override;
  int64_t backwards(const MicroBatch&) const override { return 1; }

 private:
  Llama& model_;
  int64_t sp_, sp_rank_, head_rows_;
  std::vector<GradientReducer*> reducers_;
};

}  // namespace loom
