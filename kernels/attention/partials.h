// Partial attention results and how they combine. A block of query rows attended over one set of
// keys gives (out, lse); results of the same rows over disjoint key sets merge exactly by
// log-sum-exp. Ring and TokenRing attention, prefix attention and the fused GPU path are built
// from these merges.
#pragma once
#include <torch/torch.h>

namespace loom {

struct BlockOutput {
  torch::Tensor out;  // [Hq, Nq, d], accumulation dtype
  torch::Tensor lse;  // [Hq, Nq], accumulation dtype, natural log; -inf for a row that saw no key
};

struct BlockGrads {
  torch::Tensor dq, dk, dv;  // accumulation dtype
};

// Combines the results of the same rows over two disjoint key sets, in the overflow-free form
// out = o1 - sigmoid(lse2 - lse1) (o1 - o2), lse = lse1 - logsigmoid(lse1 - lse2); rows empty on
// one side take the other side unchanged.
BlockOutput merge_partials(const BlockOutput& a, const BlockOutput& b);

// The partial result of q's rows over no keys yet: out 0, lse -inf, in the accumulation dtype.
BlockOutput empty_partial(const torch::Tensor& q);

// D = rowsum(dO * O) per row, in out's dtype: all a backward needs of the output.
torch::Tensor output_delta(const torch::Tensor& dout, const torch::Tensor& out);

}  // namespace loom
