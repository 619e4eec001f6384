// The weights the optimizer updates, when the model computes in a narrower dtype than it keeps:
// float32 masters of bfloat16 parameters (llm.c's master weights, torchtitan's mixed-precision
// policy). The optimizer steps the masters with their gradients in the master dtype, and the
// model's parameters are then rounded from them, so updates smaller than a bfloat16 ulp still
// accumulate. Checkpoints hold the masters. Where the two dtypes agree (float32 or float64
// training) the masters are the parameters themselves and nothing is copied.
#pragma once
#include <torch/torch.h>

#include <vector>

#include "runtime/core/named_tensors.h"

namespace loom {

class MasterWeights {
 public:
  MasterWeights(const NamedTensors& params, c10::ScalarType master);

  // What the optimizer steps, clipping measures and checkpoints hold, under the parameters' names.
  const NamedTensors& masters() const { return masters_; }
  std::vector<torch::Tensor> master_tensors() const;
  bool separate() const { return separate_; }

  // Masters' gradients <- the parameters' gradients, widened (where no gradient reducer has written
  // the masters' gradients already).
  void take_grads();
  // Parameters <- masters, rounded to the parameters' dtype.
  void write_back();
  // No gradient on either side.
  void zero_grads();

 private:
  NamedTensors params_, masters_;
  bool separate_;
};

}  // namespace loom
