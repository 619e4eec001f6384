#include "parallel/data/gradient_reducer.h"

#include "runtime/core/error.h"

namespace loom {

GradientReducer::GradientReducer(std::vector<torch::Tensor> params, Communicator& group, int64_t bucket_bytes)
    : GradientReducer(params, params, params.empty() ? torch::kFloat32 : params.front().scalar_type(), group, bucket_bytes) {}

GradientReducer::GradientReducer(std::vector<torch::Tensor> params, std::vector<torch::Tensor> targets, c10::ScalarType reduce_dtype,
                                 Communicator& group, int64_t bucket_bytes)
    : GradientReducer(std::move(params), std::move(targets), reduce_dtype, group, bucket_bytes, 0) {}

GradientReducer::GradientReducer(std::vector<torch::Tensor> params, c10::ScalarType reduce_dtype, Communicator& group,
                                 int64_t bucket_bytes, int zero_stage)
    : GradientReducer(std::move(params), {}, reduce_dtype, group, bucket_bytes, zero_stage) {
  check(zero_stage == 1 || zero_stage == 2, "a sharded GradientReducer is ZeRO stage 1 or 2, not " + std::to_string(zero_stage));
}

GradientReducer::GradientReducer(std::vector<torch::Tensor> params, std::vector<torch::Tensor> targets, c10::ScalarType reduce_dtype,
                                 Communicator& group, int64_t bucket_bytes, int zero_stage)
    : params_(std::move(params)),
      targets_(std::move(targets)),
      group_(group),
      bucket_of_(params_.size()),
      slot_of_(params_.size()),
      arrived_(params_.size()),
      zero_stage_(zero_stage) {
  check(!params_.empty(), "GradientReducer needs parameters");
  check(zero_stage_ > 0 || targets_.size() == params_.size(), "GradientReducer needs one target per parameter");
  const auto dtype = params_.front().scalar_type();
  const auto reduce_bytes = static_cast<int64_t>(c10::elementSize(reduce_dtype));
  int64_t elements = 0;  // of the bucket being filled
  for (size_t i = params_.size(); i-- > 0;) {
    const auto& p = params_[i];
    check(p.scalar_type() == dtype, "data parallelism needs every parameter in one dtype");
    if (buckets_.empty() || (elements > 0 && (elements + p.numel()) * reduce_bytes > bucket_bytes)) {
      buckets_.emplace_back();
      elements = 0;
    }
    Bucket& b = buckets_.back();
    bucket_of_[i] = buckets_.size() - 1;
    slot_of_[i] = b.params.size();
    b.params.push_back(i);
    b.offsets.push_back(elements);
    elements += p.numel();
  }
  const int64_t ranks = group_.size();
  reduce_options_ = params_.front().options().dtype(reduce_dtype);
  for (auto& b : buckets_) {
    const int64_t elements = b.offsets.back() + params_[b.params.back()].numel();
    if (zero_stage_ == 0) {
      b.padded = elements;
      b.flat = torch::empty({elements}, reduce_options_);
      continue;
    }
    // The padding is never written, so it sums to zero.
    b.padded = (elements + ranks - 1) / ranks * ranks;
    const int64_t part = b.padded / ranks;
    if (zero_stage_ == 2) {
      b.part = torch::zeros({part}, reduce_options_);
      continue;
    }
    b.flat = torch::zeros({b.padded}, reduce_options_);
    b.part = b.flat.narrow(0, group_.rank() * part, part);
  }
  for (size_t i = 0; i < params_.size(); ++i) {
    hooks_.push_back(params_[i].register_hook([this, i](const torch::Tensor& grad) { on_gradient(i, grad); }));
  }
}

GradientReducer::~GradientReducer() {
  for (size_t i = 0; i < params_.size(); ++i) params_[i].remove_hook(hooks_[i]);
}

void GradientReducer::arm() {
  if (armed_) {
    check(zero_stage_ == 2, "GradientReducer armed twice without finish()");
    complete_backward();
  } else if (zero_stage_ == 2) {
    for (auto& b : buckets_) b.part.zero_();
  }
  armed_ = true;
  next_launch_ = next_retire_ = 0;
  std::fill(arrived_.begin(), arrived_.end(), false);
  for (auto& b : buckets_) b.filled = 0;
}

torch::Tensor& GradientReducer::flat_of(Bucket& b) {
  if (!b.flat.defined()) {
    b.flat = torch::zeros({b.padded}, reduce_options_);
    count_transient(bytes_of(b.flat));
  }
  return b.flat;
}

void GradientReducer::count_transient(int64_t bytes) {
  transient_ += bytes;
  peak_transient_ = std::max(peak_transient_, transient_);
}

// Runs inside the backward, before the gradient is accumulated into .grad, so the step's total
// for this parameter is what .grad holds from earlier micro-batches plus `grad`.
void GradientReducer::on_gradient(size_t param, const torch::Tensor& grad) {
  if (!armed_ || arrived_[param]) return;
  arrived_[param] = true;
  // The previous parameter's .grad was written after its hook returned, before this one ran.
  drop_last_gradient();
  if (zero_stage_ == 2) last_arrived_ = param;
  Bucket& b = buckets_[bucket_of_[param]];
  const auto& p = params_[param];
  auto slot = flat_of(b).narrow(0, b.offsets[slot_of_[param]], p.numel());
  const auto& earlier = p.grad();
  if (earlier.defined()) {
    slot.copy_(earlier.reshape(-1));
    slot.add_(grad.reshape(-1));
  } else {
    slot.copy_(grad.reshape(-1));
  }
  ++b.filled;
  launch_ready_buckets();
}

void GradientReducer::drop_last_gradient() {
  if (!last_arrived_) return;
  params_[*last_arrived_].mutable_grad() = torch::Tensor();
  last_arrived_.reset();
}

void GradientReducer::launch_ready_buckets() {
  while (next_launch_ < buckets_.size() && buckets_[next_launch_].filled == buckets_[next_launch_].params.size()) {
    Bucket& b = buckets_[next_launch_++];
    if (zero_stage_ == 2) {
      b.incoming = torch::empty({b.part.numel()}, reduce_options_);
      count_transient(bytes_of(b.incoming));
      b.handle = group_.reduce_scatter(b.flat, b.incoming, ReduceOp::kSum);
    } else {
      b.handle = group_.all_reduce(b.flat, ReduceOp::kSum);
    }
    while (zero_stage_ == 2 && next_launch_ - next_retire_ > kInFlight) retire_next();
  }
}

void GradientReducer::retire_next() {
  Bucket& b = buckets_[next_retire_++];
  b.handle.wait();
  b.part.add_(b.incoming);
  count_transient(-bytes_of(b.flat) - bytes_of(b.incoming));
  b.flat = torch::Tensor();
  b.incoming = torch::Tensor();
}

void GradientReducer::complete_backward() {
  // A parameter the backward did not reach contributes what it has (or zero), so every rank still
  // issues every bucket.
  for (size_t i = 0; i < params_.size(); ++i) {
    if (arrived_[i]) continue;
    arrived_[i] = true;
    Bucket& b = buckets_[bucket_of_[i]];
    auto slot = flat_of(b).narrow(0, b.offsets[slot_of_[i]], params_[i].numel());
    if (params_[i].grad().defined()) slot.copy_(params_[i].grad().reshape(-1));
    else slot.zero_();
    if (zero_stage_ == 2) params_[i].mutable_grad() = torch::Tensor();
    ++b.filled;
  }
  drop_last_gradient();
  launch_ready_buckets();
  if (zero_stage_ == 2) {
    while (next_retire_ < buckets_.size()) retire_next();
    return;
  }
  for (auto& b : buckets_) b.handle.wait();
}

void GradientReducer::finish() {
  check(armed_, "GradientReducer::finish without arm()");
  complete_backward();
  armed_ = false;
  if (zero_stage_ > 0) return;
  for (auto& b : buckets_)
    for (size_t k = 0; k < b.params.size(); ++k) {
      auto& t = targets_[b.params[k]];
      const auto reduced = b.flat.narrow(0, b.offsets[k], t.numel()).view(t.sizes());
      if (t.grad().defined()) t.mutable_grad().copy_(reduced);
      else t.mutable_grad() = reduced.to(t.scalar_type(), /*non_blocking=*/false, /*copy=*/true);
    }
}

int64_t GradientReducer::held_bytes() const {
  int64_t bytes = 0;
  for (const auto& b : buckets_) bytes += bytes_of(zero_stage_ == 2 ? b.part : b.flat);
  return bytes;
}

}  // namespace loom
