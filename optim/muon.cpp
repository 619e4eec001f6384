#include "optim/muon.h"

#include <cmath>
#include <map>

#include "runtime/core/error.h"

namespace loom {

Muon::Muon(const NamedTensors& params, MuonOptions options, MatrixSlices slices)
    : options_(options), slices_(std::move(slices)) {
  for (const auto& [name, p] : params) {
    check(p.dim() == 2, "Muon updates matrices only; '" + name + "' has " + std::to_string(p.dim()) +
                            " dimensions (give it to AdamW)");
    slots_.push_back({name, p, torch::zeros_like(p)});
  }
}

void Muon::step(double lr) {
  torch::NoGradGuard no_grad;
  for (auto& s : slots_) {
    const auto& g = s.param.grad();
    if (!g.defined()) continue;
    s.momentum.mul_(options_.momentum).add_(g);
    auto direction = options_.nesterov ? g + options_.momentum * s.momentum : s.momentum;
    if (slices_.whole) direction = slices_.whole(s.name, direction);
    const auto rows = static_cast<double>(direction.size(0)), cols = static_cast<double>(direction.size(1));
    const double shape_scale = options_.scale == MuonScale::kShape ? std::sqrt(std::max(1.0, rows / cols))
                                                                   : 0.2 * std::sqrt(std::max(rows, cols));
    if (options_.weight_decay > 0) s.param.mul_(1.0 - lr * options_.weight_decay);
    auto update = newton_schulz(direction, options_.schedule, options_.steps);
    if (slices_.slice_of) update = slices_.slice_of(s.name, update);
    s.param.add_(update, -lr * shape_scale);
  }
}

NamedTensors Muon::state() const {
  NamedTensors out;
  for (const auto& s : slots_) out.emplace_back(s.name + ".momentum", s.momentum);
  return out;
}

void Muon::load_state(const NamedTensors& state) {
  std::map<std::string, torch::Tensor> by_name(state.begin(), state.end());
  torch::NoGradGuard no_grad;
  for (auto& s : slots_) {
    auto it = by_name.find(s.name + ".momentum");
    check(it != by_name.end() && it->second.sizes() == s.momentum.sizes(),
          "Muon state lacks a momentum of the right shape for '" + s.name +
              "'; the checkpoint is from another model or was trained with another train.optimizer");
    s.momentum.copy_(it->second);
  }
}

}  // namespace loom
