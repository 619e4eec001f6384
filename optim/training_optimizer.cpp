#include "optim/training_optimizer.h"

#include <cstdio>

namespace loom {
namespace {

std::string count_of(const NamedTensors& params) {
  int64_t n = 0;
  for (const auto& [name, p] : params) n += p.numel();
  char text[32];
  std::snprintf(text, sizeof text, n >= 1000000 ? "%.1fM" : "%.1fk", n >= 1000000 ? n / 1e6 : n / 1e3);
  return text;
}

}  // namespace

bool is_muon_parameter(const std::string& name, const torch::Tensor& p) {
  return p.dim() == 2 && name.rfind("model.layers.", 0) == 0;
}

TrainingOptimizer::TrainingOptimizer(const NamedTensors& params, const TrainConfig& t, MatrixSlices slices) {
  for (const auto& item : params) {
    const bool muon = t.optimizer == "muon" && is_muon_parameter(item.first, item.second);
    (muon ? muon_params_ : adamw_params_).push_back(item);
  }
  adamw_ = std::make_unique<AdamW>(adamw_params_, AdamWOptions{t.beta1, t.beta2, t.eps, t.weight_decay});
  if (!muon_params_.empty()) {
    MuonOptions options;
    options.momentum = t.muon_momentum;
    options.weight_decay = t.weight_decay;
    options.scale = MuonScale::kMatchAdamW;
    muon_ = std::make_unique<Muon>(muon_params_, options, std::move(slices));
  }
}

void TrainingOptimizer::step(double lr) {
  adamw_->step(lr);
  if (muon_) muon_->step(lr);
}

NamedTensors TrainingOptimizer::state() const {
  NamedTensors out = adamw_->state();
  if (muon_) {
    const NamedTensors m = muon_->state();
    out.insert(out.end(), m.begin(), m.end());
  }
  return out;
}

void TrainingOptimizer::load_state(const NamedTensors& state) {
  adamw_->load_state(state);
  if (muon_) muon_->load_state(state);
}

std::string TrainingOptimizer::describe() const {
  const std::string adamw = "adamw on " + std::to_string(adamw_params_.size()) + " tensors (" + count_of(adamw_params_) + ")";
  if (!muon_) return adamw;
  return "muon on " + std::to_string(muon_params_.size()) + " matrices (" + count_of(muon_params_) + "), " + adamw;
}

}  // namespace loom
