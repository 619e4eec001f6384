// AdamW with decoupled weight decay, applied to matrices only (norm gains are not decayed).
// Its state is a list of named tensors so that checkpoints store it next to the weights and a resume
// continues bit-exactly.
#pragma once
#include <torch/torch.h>

#include <vector>

#include "runtime/core/named_tensors.h"

namespace loom {

struct AdamWOptions {
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;
};

// One AdamW update, in place, of `param` and its moments from `grad`, as the `step`-th step (from
// 1); `decay` applies the weight decay. What AdamW::step does to each tensor, open to a sharded
// optimizer that applies the same arithmetic to slices of them.
void adamw_update(torch::Tensor param, const torch::Tensor& grad, torch::Tensor exp_avg, torch::Tensor exp_avg_sq,
                  bool decay, double lr, int64_t step, const AdamWOptions& options);

class AdamW {
 public:
  AdamW(const NamedTensors& params, AdamWOptions options);

  void step(double lr);  // parameters without a gradient are left alone
  int64_t steps_taken() const { return steps_; }

  // "<param>.exp_avg" and "<param>.exp_avg_sq" for every parameter, plus the step count.
  NamedTensors state() const;
  void load_state(const NamedTensors& state);

 private:
  struct Slot {
    std::string name;
    torch::Tensor param, exp_avg, exp_avg_sq;
  };
  std::vector<Slot> slots_;
  AdamWOptions options_;
  int64_t steps_ = 0;
};

// Scales all gradients so their global L2 norm is at most max_norm (0: no clipping); returns the
// norm before clipping.
double clip_grad_norm(const std::vector<torch::Tensor>& params, double max_norm);

// Its two halves, for a norm whose squares are summed over several ranks: the sum of the
// gradients' squares (float64), and their scaling by max_norm / norm when norm exceeds max_norm.
double grad_norm_squared(const std::vector<torch::Tensor>& params);
void scale_gradients(const std::vector<torch::Tensor>& params, double norm, double max_norm);
// The factor clipping multiplies gradients of global norm `norm` by: max_norm / norm where norm
// exceeds max_norm (> 0), else 1.
double clip_scale(double norm, double max_norm);

}  // namespace loom
