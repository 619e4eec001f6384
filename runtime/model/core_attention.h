// The core of an attention layer: (q, k, v), after the projections and RoPE, to its output, over
// the tokens of one packed micro-batch. Every attention layer of the model (LaCT's window
// attention included) holds one; how it is computed is installed from outside the model:
//   - LocalAttention, the default: the block kernel over the tokens this rank holds;
//   - parallelize() (parallelize.h): ring, TokenRing or halo attention over the sp group;
//   - chunk-wise backprop (runtime/train/chunkwise): attention over the cached earlier chunks.
#pragma once
#include <torch/torch.h>

#include <memory>

#include "parallel/sequence/sequence_shard.h"

namespace loom {

class CoreAttention {
 public:
  virtual ~CoreAttention() = default;
  // q [Hq, n, d], k and v [Hkv, n, d] of `input`'s tokens -> out [Hq, n, d] in q's dtype.
  virtual torch::Tensor attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, double scale,
                               const SequenceShard& input) = 0;
};

// Causal attention over the tokens this rank holds, never across a document, within `window`
// tokens when window > 0 (LaCT's sliding window).
class LocalAttention : public CoreAttention {
 public:
  explicit LocalAttention(int64_t window = 0) : window_(window) {}
  torch::Tensor attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, double scale,
                       const SequenceShard& input) override;
  int64_t window() const { return window_; }

 private:
  int64_t window_;
};

}  // namespace loom
