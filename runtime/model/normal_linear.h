// A linear layer initialised the way Loom's models are: weights N(0, std²), bias (if any) zero.
#pragma once
#include <torch/torch.h>

namespace loom {

inline torch::nn::Linear normal_linear(int64_t in, int64_t out, double std, bool bias = false) {
  torch::nn::Linear layer(torch::nn::LinearOptions(in, out).bias(bias));
  torch::NoGradGuard no_grad;
  layer->weight.normal_(0.0, std);
  if (bias) layer->bias.zero_();
  return layer;
}

}  // namespace loom
