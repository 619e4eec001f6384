#include "optim/adamw.h"

#include <cmath>
#include <map>

#include "runtime/core/error.h"

namespace loom {

AdamW::AdamW(const NamedTensors& params, AdamWOptions options) : options_(options) {
  for (const auto& [name, p] : params) slots_.push_back({name, p, torch::zeros_like(p), torch::zeros_like(p)});
}

void adamw_update(torch::Tensor param, const torch::Tensor& grad, torch::Tensor exp_avg, torch::Tensor exp_avg_sq,
                  bool decay, double lr, int64_t step, const AdamWOptions& o) {
  torch::NoGradGuard no_grad;
  const double bc1 = 1.0 - std::pow(o.beta1, static_cast<double>(step));
  const double bc2 = 1.0 - std::pow(o.beta2, static_cast<double>(step));
  exp_avg.mul_(o.beta1).add_(grad, 1.0 - o.beta1);
  exp_avg_sq.mul_(o.beta2).addcmul_(grad, grad, 1.0 - o.beta2);
  const auto denom = (exp_avg_sq.sqrt() / std::sqrt(bc2)).add_(o.eps);
  if (decay) param.mul_(1.0 - lr * o.weight_decay);
  param.addcdiv_(exp_avg, denom, -lr / bc1);
}

void AdamW::step(double lr) {
  ++steps_;
  for (auto& s : slots_) {
    const auto& g = s.param.grad();
    if (g.defined()) adamw_update(s.param, g, s.exp_avg, s.exp_avg_sq, s.param.dim() >= 2, lr, steps_, options_);
  }
}

NamedTensors AdamW::state() const {
  NamedTensors out;
  for (const auto& s : slots_) {
    out.emplace_back(s.name + ".exp_avg", s.exp_avg);
    out.emplace_back(s.name + ".exp_avg_sq", s.exp_avg_sq);
  }
  out.emplace_back("adamw.steps", torch::tensor({steps_}, torch::kInt64));
  return out;
}

void AdamW::load_state(const NamedTensors& state) {
  std::map<std::string, torch::Tensor> by_name(state.begin(), state.end());
  auto take = [&](const std::string& name, torch::Tensor& into) {
    auto it = by_name.find(name);
    check(it != by_name.end(), "optimizer state lacks '" + name +
                                   "'; the checkpoint is from another model or was trained with another train.optimizer");
    check(it->second.sizes() == into.sizes(), "optimizer state '" + name + "' has the wrong shape");
    torch::NoGradGuard no_grad;
    into.copy_(it->second);
  };
  for (auto& s : slots_) {
    take(s.name + ".exp_avg", s.exp_avg);
    take(s.name + ".exp_avg_sq", s.exp_avg_sq);
  }
  auto it = by_name.find("adamw.steps");
  check(it != by_name.end(), "optimizer state lacks its step count");
  steps_ = it->second.item<int64_t>();
}

double grad_norm_squared(const std::vector<torch::Tensor>& params) {
  torch::NoGradGuard no_grad;
  double sum_sq = 0.0;
  for (const auto& p : params)
    if (p.grad().defined()) sum_sq += p.grad().to(torch::kFloat64).pow(2).sum().item<double>();
  return sum_sq;
}

double clip_scale(double norm, double max_norm) {
  return max_norm <= 0 || norm <= max_norm ? 1.0 : max_norm / (norm + 1e-6);
}

void scale_gradients(const std::vector<torch::Tensor>& params, double norm, double max_norm) {
  const double scale = clip_scale(norm, max_norm);
  if (scale == 1.0) return;
  torch::NoGradGuard no_grad;
  for (const auto& p : params)
    if (p.grad().defined()) p.grad().mul_(scale);
}

double clip_grad_norm(const std::vector<torch::Tensor>& params, double max_norm) {
  const double norm = std::sqrt(grad_norm_squared(params));
  scale_gradients(params, norm, max_norm);
  return norm;
}

}  // namespace loom
