// The residual boundaries of the decoder. Every sublayer (attention, MLP) adds its output `delta`
// to the residual stream h and the next sublayer reads the stream normalised:
//   h' = h + delta,  normed = RMSNorm(h')
// (before the first layer h is undefined and h' is the embedding; after the last, the norm is the
// final one and `normed` feeds the LM head). All of them go through one ResidualNorm, which is the
// seam where tensor parallelism with sequence-sharded norms puts its reduce-scatter -> add + norm ->
// all-gather, and TokenWeave its fused kernel (Gond et al., "TokenWeave", arXiv 2505.11329); without
// them the boundary is computed where the tokens are.
#pragma once
#include <torch/torch.h>

namespace loom {

class RMSNormImpl : public torch::nn::Module {
 public:
  RMSNormImpl(int64_t dim, double eps);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight;
  double eps() const { return eps_; }

 private:
  double eps_;
};
TORCH_MODULE(RMSNorm);

// The stream after a boundary and its normalised copy.
struct Residual {
  torch::Tensor h, normed;
};

class ResidualNorm {
 public:
  virtual ~ResidualNorm() = default;
  virtual Residual apply(const torch::Tensor& h, const torch::Tensor& delta, RMSNormImpl& norm) = 0;
};

// The boundary on this rank's tokens.
class LocalResidualNorm : public ResidualNorm {
 public:
  Residual apply(const torch::Tensor& h, const torch::Tensor& delta, RMSNormImpl& norm) override;
};

}  // namespace loom
