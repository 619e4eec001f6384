// TokenWeave's overlapped layers (Gond et al., arXiv 2505.11329) on a tensor-parallel model: a
// rank's tokens are cut into halves A and B (parallel/tensor/token_weave.h says where), and every
// layer runs as four steps, each computing one half's sublayer while the other half's residual
// boundary (reduce + add + norm) runs on the boundary worker:
//   boundary(B, input norm)        ||  attention(A)
//   boundary(A, post-attention)    ||  attention(B)     B's queries also see A's keys
//   boundary(B, post-attention)    ||  MLP(A)
//   boundary(A, next input norm)   ||  MLP(B)
// (B's boundary into the next layer overlaps that layer's attention(A)). Rows are independent
// everywhere but in attention, where B attends over A's keys too, so the result is the unsplit
// forward's; the backward runs each boundary's backward on the worker as well, where autograd's
// order lets the other half's gradients compute meanwhile.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <vector>

#include "parallel/sequence/sequence_shard.h"
#include "parallel/tensor/token_weave.h"
#include "runtime/model/decoder_layer.h"

namespace loom {

// What the interleaved layers need of the model: its embedding (partial sums when the vocabulary
// is split), its layers in order and the final norm.
struct WovenModel {
  const ModelConfig& config;
  std::function<torch::Tensor(const torch::Tensor&)> embed;
  std::vector<DecoderLayerImpl*> layers;
  RMSNormImpl& final_norm;
};

// The final normalised hidden states [n, D] of input's tokens with the layers interleaved over two
// halves; undefined where the input is not split (too few tokens, or a sequence shard).
torch::Tensor token_weave_hidden(const WovenModel& model, const SequenceShard& input, const TokenWeavePlan& plan);

}  // namespace loom
