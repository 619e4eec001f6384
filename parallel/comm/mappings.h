// The collectives as autograd functions, one family (after Megatron-core's mappings): each one's
// backward is its adjoint, so a loss that is the sum of every rank's loss gets exact gradients on
// every rank. Forward and backward each block until their collective completes; `comm` must
// outlive the backward, and every rank must run the same forward (the backwards then issue the
// same collectives in the same order).
//
//   all_reduce      y_r = Σ_p x_p on every rank             backward: all_reduce of the gradients
//   reduce_scatter  y_r = part r of Σ_p x_p                  backward: all_gather
//   all_gather      y_r = [x_0; x_1; ...] on every rank      backward: reduce_scatter
//   all_to_all      rows of x_p travel to the ranks named   backward: all_to_all back along the same rows
//
// Users: LaCT's context parallelism sums the ranks' parts of every fast-weight update with
// all_reduce; tensor parallelism's sequence-sharded norms will reduce-scatter and all-gather.
#pragma once
#include <torch/torch.h>

#include <vector>

#include "parallel/comm/communicator.h"

namespace loom::differentiable {

torch::Tensor all_reduce(const torch::Tensor& x, Communicator& comm);

// x [size * m, ...] -> [m, ...].
torch::Tensor reduce_scatter(const torch::Tensor& x, Communicator& comm);

// x [m, ...] -> [size * m, ...].
torch::Tensor all_gather(const torch::Tensor& x, Communicator& comm);

// Rows [sum(send_rows[:p]), +send_rows[p]) of x go to rank p; the result holds rank p's rows at
// offset sum(recv_rows[:p]).
torch::Tensor all_to_all(const torch::Tensor& x, const std::vector<int64_t>& send_rows, const std::vector<int64_t>& recv_rows,
                         Communicator& comm);

}  // namespace loom::differentiable
