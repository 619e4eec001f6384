// TokenWeave's token splitting (Gond et al., arXiv 2505.11329): a rank's tokens cut into two halves
// whose layers interleave, so that one half's residual boundary (reduce + add + norm) communicates
// while the other half computes. This file decides where to cut; runtime/model/token_weave.h runs
// the interleaved layers.
//
// TokenWeave picks the cut on a GPU by the GEMMs' wave quantisation. A CPU has no waves, so here the
// cut balances the two halves' work: each token's linear layers, plus the attention pairs its query
// sees (the second half's queries also see the first half's keys, so it gets fewer tokens).
#pragma once
#include <torch/torch.h>

#include <cstdint>

#include "parallel/comm/communicator.h"
#include "parallel/tensor/boundary_worker.h"

namespace loom {

// How a tensor-parallel model splits its tokens: which group reduces the boundaries, on which
// worker, and from how many tokens on.
struct TokenWeavePlan {
  Communicator* tp = nullptr;        // the tp group, used by the worker alone
  BoundaryWorker* worker = nullptr;
  int64_t min_tokens = 0;            // sequences shorter than this are not split
};

// Work per token of the linear layers and per visible (query, key) pair of attention, in any one
// unit (FLOPs of one layer).
struct WeaveCost {
  double per_token = 0, per_pair = 0;
};

// The first `first` tokens form half A, the rest half B; 0: not split (fewer than `min_tokens`
// tokens). The cut is a multiple of `tp`, so half A's rows divide evenly over the tp ranks.
struct TokenSplit {
  int64_t first = 0;
  bool split() const { return first > 0; }
};

// positions, doc_ids [N]: the tokens of one packed sequence (causal attention within documents).
TokenSplit split_tokens(const torch::Tensor& positions, const torch::Tensor& doc_ids, int64_t tp, int64_t min_tokens,
                        const WeaveCost& cost);

}  // namespace loom
