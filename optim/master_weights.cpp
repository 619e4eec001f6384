#include "optim/master_weights.h"

namespace loom {

MasterWeights::MasterWeights(const NamedTensors& params, c10::ScalarType master)
    : params_(params), separate_(!params.empty() && params.front().second.scalar_type() != master) {
  if (!separate_) {
    masters_ = params;
    return;
  }
  torch::NoGradGuard no_grad;
  for (const auto& [name, p] : params) masters_.emplace_back(name, p.detach().to(master).requires_grad_(true));
}

std::vector<torch::Tensor> MasterWeights::master_tensors() const {
  std::vector<torch::Tensor> out;
  for (const auto& [name, m] : masters_) out.push_back(m);
  return out;
}

void MasterWeights::take_grads() {
  if (!separate_) return;
  for (size_t i = 0; i < params_.size(); ++i) {
    const auto& g = params_[i].second.grad();
    masters_[i].second.mutable_grad() = g.defined() ? g.to(masters_[i].second.scalar_type()) : torch::Tensor();
  }
}

void MasterWeights::write_back() {
  if (!separate_) return;
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) params_[i].second.copy_(masters_[i].second);
}

void MasterWeights::zero_grads() {
  for (auto& [name, p] : params_) p.mutable_grad() = torch::Tensor();
  if (separate_)
    for (auto& [name, m] : masters_) m.mutable_grad() = torch::Tensor();
}

}  // namespace loom
