#include "parallel/data/zero_optimizer.h"

#include <functional>
#include <map>
#include <memory>

#include "runtime/core/error.h"

namespace loom {
namespace {

std::vector<torch::Tensor> tensors_of(const NamedTensors& named) {
  std::vector<torch::Tensor> out;
  for (const auto& [name, t] : named) out.push_back(t);
  return out;
}

const torch::Tensor& find(const std::map<std::string, torch::Tensor>& by_name, const std::string& name,
                          c10::IntArrayRef shape) {
  const auto it = by_name.find(name);
  check(it != by_name.end(), "optimizer state lacks '" + name +
                                 "'; the checkpoint is from another model or was trained with another train.optimizer");
  check(it->second.sizes() == shape, "'" + name + "' has the wrong shape for this model");
  return it->second;
}

}  // namespace

ZeroOptimizer::ZeroOptimizer(const NamedTensors& params, int stage, const AdamWOptions& options, c10::ScalarType master,
                             c10::ScalarType reduce, Communicator& group, int64_t bucket_bytes)
    : params_(tensors_of(params)),
      stage_(stage),
      master_(master),
      separate_(master != params_.front().scalar_type()),
      options_(options),
      reducer_(params_, reduce, group, bucket_bytes, stage) {
  for (const auto& [name, p] : params) {
    names_.push_back(name);
    check(p.is_contiguous(), "ZeRO steps slices of the parameters in place: '" + name + "' must be contiguous");
  }
  const int64_t rank = group.rank(), ranks = group.size();
  for (int64_t b = 0; b < reducer_.num_buckets(); ++b) {
    const int64_t size = reducer_.padded(b) / ranks, lo = rank * size, hi = lo + size;
    Part part;
    const auto options_of = params_.front().options().dtype(master);
    if (separate_) part.master = torch::zeros({size}, options_of);
    part.exp_avg = torch::zeros({size}, options_of);
    part.exp_avg_sq = torch::zeros({size}, options_of);
    for (size_t k = 0; k < reducer_.params(b).size(); ++k) {
      const size_t param = reducer_.params(b)[k];
      const int64_t begin = reducer_.offsets(b)[k], end = begin + params_[param].numel();
      const int64_t from = std::max(lo, begin), to = std::min(hi, end);
      if (from < to) part.segments.push_back({param, from - begin, to - from, from - lo});
    }
    parts_.push_back(std::move(part));
  }
  take_parameters();
}

torch::Tensor ZeroOptimizer::param_slice(const Segment& s) const {
  return params_[s.param].detach().view(-1).narrow(0, s.param_begin, s.count);
}

torch::Tensor ZeroOptimizer::master_slice(const Part& part, const Segment& s) const {
  return separate_ ? part.master.narrow(0, s.offset, s.count) : param_slice(s);
}

void ZeroOptimizer::take_parameters() {
  if (!separate_) return;
  torch::NoGradGuard no_grad;
  for (Part& part : parts_)
    for (const Segment& s : part.segments) master_slice(part, s).copy_(param_slice(s));
}

double ZeroOptimizer::grad_norm_squared() const {
  double sum = 0;
  for (int64_t b = 0; b < reducer_.num_buckets(); ++b) sum += reducer_.part(b).to(torch::kFloat64).pow(2).sum().item<double>();
  return sum;
}

void ZeroOptimizer::scale_gradients(double norm, double max_norm) {
  const double scale = clip_scale(norm, max_norm);
  if (scale == 1.0) return;
  for (int64_t b = 0; b < reducer_.num_buckets(); ++b) {
    torch::Tensor part = reducer_.part(b);
    part.mul_(scale);
  }
}

void ZeroOptimizer::step(double lr) {
  ++steps_;
  for (size_t b = 0; b < parts_.size(); ++b) {
    Part& part = parts_[b];
    const torch::Tensor grad = reducer_.part(static_cast<int64_t>(b)).to(master_);
    for (const Segment& s : part.segments)
      adamw_update(master_slice(part, s), grad.narrow(0, s.offset, s.count),
                   part.exp_avg.narrow(0, s.offset, s.count), part.exp_avg_sq.narrow(0, s.offset, s.count),
                   params_[s.param].dim() >= 2, lr, steps_, options_);
  }
  gather_into_parameters();
}

// One bucket at a time, so that no more than a bucket of gathered weights exists beside the
// parameters.
void ZeroOptimizer::gather_into_parameters() {
  torch::NoGradGuard no_grad;
  for (size_t b = 0; b < parts_.size(); ++b) {
    const auto bucket = static_cast<int64_t>(b);
    torch::Tensor mine = torch::zeros({reducer_.padded(bucket) / reducer_.group().size()}, params_.front().options());
    for (const Segment& s : parts_[b].segments) mine.narrow(0, s.offset, s.count).copy_(master_slice(parts_[b], s));
    torch::Tensor whole = torch::empty({reducer_.padded(bucket)}, mine.options());
    reducer_.group().all_gather(mine, whole).wait();
    const auto& members = reducer_.params(bucket);
    for (size_t k = 0; k < members.size(); ++k) {
      torch::Tensor p = params_[members[k]].detach();
      p.copy_(whole.narrow(0, reducer_.offsets(bucket)[k], p.numel()).view(p.sizes()));
    }
  }
}

TensorPieces ZeroOptimizer::pieces(const std::string& suffix,
                                   const std::function<torch::Tensor(const Part&, const Segment&)>& slice) const {
  TensorPieces out;
  for (const Part& part : parts_)
    for (const Segment& s : part.segments)
      out.push_back({names_[s.param] + suffix, params_[s.param].sizes().vec(), s.param_begin, slice(part, s)});
  return out;
}

TensorPieces ZeroOptimizer::master_pieces() const {
  return pieces("", [&](const Part& part, const Segment& s) { return master_slice(part, s); });
}

TensorPieces ZeroOptimizer::state_pieces() const {
  auto out = pieces(".exp_avg", [](const Part& part, const Segment& s) { return part.exp_avg.narrow(0, s.offset, s.count); });
  for (auto& p : pieces(".exp_avg_sq", [](const Part& part, const Segment& s) { return part.exp_avg_sq.narrow(0, s.offset, s.count); }))
    out.push_back(std::move(p));
  if (reducer_.group().rank() == 0) out.push_back({"adamw.steps", {1}, 0, torch::tensor({steps_}, torch::kInt64)});
  return out;
}

void ZeroOptimizer::read_parts(const ReadRange& read, const std::string& suffix, torch::Tensor Part::*which) {
  torch::NoGradGuard no_grad;
  for (Part& part : parts_)
    for (const Segment& s : part.segments) {
      const torch::Tensor values = read(names_[s.param] + suffix, params_[s.param].sizes().vec(), s.param_begin, s.count);
      (which ? (part.*which).narrow(0, s.offset, s.count) : param_slice(s)).copy_(values);
    }
}

void ZeroOptimizer::load(const ReadRange& masters, const ReadRange& state) {
  read_parts(masters, "", separate_ ? &Part::master : nullptr);
  if (state) {
    read_parts(state, ".exp_avg", &Part::exp_avg);
    read_parts(state, ".exp_avg_sq", &Part::exp_avg_sq);
    steps_ = state("adamw.steps", {1}, 0, 1).item<int64_t>();
  } else {
    for (Part& part : parts_) {
      part.exp_avg.zero_();
      part.exp_avg_sq.zero_();
    }
    steps_ = 0;
  }
  gather_into_parameters();
}

void ZeroOptimizer::load(const NamedTensors& masters, const NamedTensors& state) {
  auto reader = [](const NamedTensors& named) -> ReadRange {
    auto by_name = std::make_shared<std::map<std::string, torch::Tensor>>(named.begin(), named.end());
    return [by_name](const std::string& name, const std::vector<int64_t>& shape, int64_t begin, int64_t count) {
      return find(*by_name, name, shape).reshape(-1).narrow(0, begin, count);
    };
  };
  load(reader(masters), state.empty() ? ReadRange() : reader(state));
}

int64_t ZeroOptimizer::state_bytes() const {
  int64_t bytes = 0;
  for (const Part& part : parts_)
    bytes += (separate_ ? bytes_of(part.master) : 0) + bytes_of(part.exp_avg) + bytes_of(part.exp_avg_sq);
  return bytes;
}

}  // namespace loom
