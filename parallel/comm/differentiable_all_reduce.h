// Sum over a communicator's ranks as an autograd function: the backward is the same sum of the
// incoming gradients, which is the exact gradient when every rank's loss is part of one total
// (y = Σ_r x_r on every rank, L = Σ_r L_r(y): dL/dx_r = Σ_r' dL_r'/dy). LaCT's context parallelism
// sums per-rank fast-weight updates with it. `comm` must outlive the backward.
#pragma once
#include <torch/torch.h>

#include "parallel/comm/communicator.h"

namespace loom {

torch::Tensor differentiable_all_reduce(const torch::Tensor& x, Communicator& comm);

}  // namespace loom
