// The residual boundary of tensor parallelism with sequence-sharded norms (Megatron's sequence
// parallelism; TokenWeave's reordering of the all-reduce around the norm, Gond et al., arXiv
// 2505.11329): between layers the residual stream is split over the tp ranks by tokens, and a
// row-parallel layer's partial sums become the next layer's input in one operation:
//   s = reduce-scatter(partial)                 this rank's rows, summed over the tp ranks
//   residual' = residual + s                    only this rank's rows of the residual exist here
//   normed = all-gather(RMSNorm(residual') * gamma)   every rank gets every row
// Each row is reduced and normalised by one rank and broadcast, so every rank's `normed` is bitwise
// the same. The reduction sums in float32 or wider whatever the rows' dtype, rounding once. The
// backward is one node too: reduce-scatter the incoming gradient of `normed` (each rank holds its
// partial sum of it), the norm's backward on this rank's rows, all-gather the gradient of the
// partial sums. The rows are padded to a multiple of the tp degree.
#pragma once
#include <torch/torch.h>

#include <future>

#include "parallel/comm/communicator.h"
#include "parallel/tensor/boundary_worker.h"

namespace loom {

struct ReducedNorm {
  torch::Tensor residual;  // this rank's rows [ceil(N / tp), D]
  torch::Tensor normed;    // all rows [N, D]
};

// partial [N, D] (this rank's partial sums of every row), residual [ceil(N / tp), D] or undefined
// (the embedding's boundary: the residual starts as the reduced sum), gamma [D]. Differentiable in
// partial, residual and gamma (gamma's gradient is this rank's rows' share: sum it over the ranks).
// `tp` must outlive the backward.
ReducedNorm reduce_add_norm(const torch::Tensor& partial, const torch::Tensor& residual, const torch::Tensor& gamma,
                            double eps, Communicator& tp);

// The same running on a BoundaryWorker while the caller computes (TokenWeave's overlap): start()
// returns at once, and wait() must come before the outputs are read. Each backward runs on the
// worker too; the gradients it sends back pass through a node that waits for it, and those nodes
// take autograd priorities reserved before the forward computes anything, so the backward runs
// every computation that is ready before it blocks on the worker. `tp` must be used by the worker
// alone, and every rank must start the same boundaries in the same order.
struct PendingNorm {
  ReducedNorm out;
  std::shared_future<void> done;
  const ReducedNorm& wait() const {
    done.get();
    return out;
  }
};

class AsyncBoundaries {
 public:
  // For at most `count` boundaries, started in the forward that follows.
  AsyncBoundaries(Communicator& tp, BoundaryWorker& worker, int64_t count);
  PendingNorm start(const torch::Tensor& partial, const torch::Tensor& residual, const torch::Tensor& gamma, double eps);

 private:
  Communicator& tp_;
  BoundaryWorker& worker_;
  uint64_t next_priority_, end_priority_;
};

}  // namespace loom
