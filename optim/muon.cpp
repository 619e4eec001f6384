#include "optim/muon.h"

#include <array>
#include <cmath>
#include <map>

#include "runtime/core/error.h"

namespace loom {
namespace {

using Triple = std::array<double, 3>;

// LaCT's per-iteration coefficients (its language-model code), then the classic single triple.
constexpr std::array<Triple, 5> kPerIteration = {{{4.0848, -6.8946, 2.9270},
                                                  {3.9505, -6.3029, 2.6377},
                                                  {3.7418, -5.5913, 2.3037},
                                                  {2.8769, -3.1427, 1.2046},
                                                  {2.8366, -3.0525, 1.2012}}};
constexpr Triple kClassic = {3.4445, -4.7750, 2.0315};

}  // namespace

torch::Tensor newton_schulz(const torch::Tensor& g, NsSchedule schedule, int steps) {
  check(g.dim() >= 2, "newton_schulz needs matrices ([..., m, n])");
  const bool tall = g.size(-2) > g.size(-1);
  auto x = (tall ? g.transpose(-2, -1) : g).to(g.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32);
  x = x / (torch::linalg_norm(x, "fro", {-2, -1}, true) + 1e-7);
  const int n = schedule == NsSchedule::kPerIteration ? static_cast<int>(kPerIteration.size()) : steps;
  for (int i = 0; i < n; ++i) {
    const auto& [a, b, c] = schedule == NsSchedule::kPerIteration ? kPerIteration[i] : kClassic;
    const auto gram = torch::matmul(x, x.transpose(-2, -1));
    x = a * x + torch::matmul(b * gram + c * torch::matmul(gram, gram), x);
  }
  return (tall ? x.transpose(-2, -1) : x).to(g.scalar_type());
}

Muon::Muon(const NamedTensors& params, MuonOptions options) : options_(options) {
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
    const auto direction = options_.nesterov ? g + options_.momentum * s.momentum : s.momentum;
    const auto rows = static_cast<double>(s.param.size(0)), cols = static_cast<double>(s.param.size(1));
    const double shape_scale = options_.scale == MuonScale::kShape ? std::sqrt(std::max(1.0, rows / cols))
                                                                   : 0.2 * std::sqrt(std::max(rows, cols));
    if (options_.weight_decay > 0) s.param.mul_(1.0 - lr * options_.weight_decay);
    s.param.add_(newton_schulz(direction, options_.schedule, options_.steps), -lr * shape_scale);
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
