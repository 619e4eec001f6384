// Data-parallel gradient reduction that overlaps the backward pass.
//
// Parameters are grouped into buckets of about `bucket_bytes`, in reverse registration order (the
// order the backward produces their gradients). A hook on each parameter copies its gradient into
// its bucket; a full bucket starts its all_reduce at once, while the backward goes on with earlier
// layers. Buckets start strictly in index order so every rank issues the same collectives in the
// same order. The reduction is a plain sum: the trainer scales the loss by the global label count,
// so the summed gradient is exactly the gradient of the global batch.
//
// The sums may be taken in a wider dtype than the gradients (float32 for bfloat16 parameters) and
// written into the gradients of other tensors of that dtype (the optimizer's master weights), so
// the reduction loses nothing to the parameters' narrow dtype.
//
// Sharded (ZeRO, zero_optimizer.h): every bucket is padded to a multiple of the group's size and
// rank r keeps part r of each bucket's sum, after an all_reduce (stage 1) or from a reduce_scatter
// that only ever delivers that part (stage 2); nothing is written into any .grad.
//
// Stage 2 keeps no whole gradient from one backward to the next: it is armed before every backward
// of the step, each backward's buckets are reduce-scattered as they fill and added into this rank's
// parts, a bucket's buffer exists only while it fills and its reduction runs (at most kInFlight at
// once), and each parameter's .grad is dropped as soon as the backward has copied it. Between
// backwards a rank holds 1/size of the gradients; the price is a reduction per micro-batch, as in
// DeepSpeed's stage 2 with gradient accumulation.
#pragma once
#include <torch/torch.h>

#include <optional>
#include <vector>

#include "parallel/comm/communicator.h"

namespace loom {

class GradientReducer {
 public:
  // Sums the parameters' gradients into their own .grad, in their dtype.
  GradientReducer(std::vector<torch::Tensor> params, Communicator& group, int64_t bucket_bytes);
  // Sums them in `reduce_dtype` into the .grad of `targets` (one per parameter, the same shapes).
  GradientReducer(std::vector<torch::Tensor> params, std::vector<torch::Tensor> targets, c10::ScalarType reduce_dtype,
                  Communicator& group, int64_t bucket_bytes);
  // Sharded: keeps this rank's part of every bucket's sum in `reduce_dtype` (stage 1 or 2).
  GradientReducer(std::vector<torch::Tensor> params, c10::ScalarType reduce_dtype, Communicator& group,
                  int64_t bucket_bytes, int zero_stage);
  ~GradientReducer();
  GradientReducer(const GradientReducer&) = delete;  // the hooks point at this object
  GradientReducer& operator=(const GradientReducer&) = delete;

  // The next backward is the last of the step (stage 2: any backward of the step): reduce gradients
  // as they become ready. Stage 2 completes the previous backward's reductions first.
  void arm();
  // Stage 2: arm before every backward of the step, not only the last.
  bool reduces_every_backward() const { return zero_stage_ == 2; }
  // Waits for every bucket and writes the reduced gradients into the targets' .grad. Call after that
  // backward.
  void finish();

  int64_t num_buckets() const { return static_cast<int64_t>(buckets_.size()); }
  // Bucket b holds parameters params(b) (indices into the constructor's list) at element offsets
  // offsets(b) of its flat buffer, which is padded(b) elements long.
  const std::vector<size_t>& params(int64_t b) const { return buckets_[b].params; }
  const std::vector<int64_t>& offsets(int64_t b) const { return buckets_[b].offsets; }
  int64_t padded(int64_t b) const { return buckets_[b].padded; }
  // Sharded, after finish(): this rank's part of bucket b's sum, elements
  // [rank * padded(b) / size, (rank + 1) * padded(b) / size) of the flat buffer.
  const torch::Tensor& part(int64_t b) const { return buckets_[b].part; }
  Communicator& group() const { return group_; }
  // Buckets whose all_reduce has started since arm().
  int64_t buckets_started() const { return static_cast<int64_t>(next_launch_); }
  // Bytes of the sums this rank keeps from one backward to the next: the whole buffers (stages 0
  // and 1) or its parts (stage 2).
  int64_t held_bytes() const;
  // Stage 2: the most bytes of bucket buffers and incoming parts that existed at once.
  int64_t peak_transient_bytes() const { return peak_transient_; }
  static constexpr size_t kInFlight = 2;

 private:
  struct Bucket {
    std::vector<size_t> params;     // indices into params_
    std::vector<int64_t> offsets;   // element offset of each param in `flat`
    int64_t padded = 0;             // elements of `flat`
    torch::Tensor flat;             // stage 2: only while it fills and its reduction runs
    torch::Tensor part;             // sharded: this rank's part of the sum
    torch::Tensor incoming;         // stage 2: this backward's part, while its reduce_scatter runs
    size_t filled = 0;
    CommHandle handle;
  };

  GradientReducer(std::vector<torch::Tensor> params, std::vector<torch::Tensor> targets, c10::ScalarType reduce_dtype,
                  Communicator& group, int64_t bucket_bytes, int zero_stage);
  void on_gradient(size_t param, const torch::Tensor& grad);
  torch::Tensor& flat_of(Bucket& b);
  void launch_ready_buckets();
  // Fills the buckets of parameters the backward did not reach, launches them and waits for all.
  void complete_backward();
  // Stage 2: waits for bucket `next_retire_`, adds its part and frees its buffers.
  void retire_next();
  // Stage 2: drops the .grad of the parameter the reducer copied last (the backward has written it
  // since).
  void drop_last_gradient();
  // Stage 2: bytes of bucket buffers and incoming parts allocated (negative: freed).
  void count_transient(int64_t bytes);

  std::vector<torch::Tensor> params_, targets_;
  Communicator& group_;
  std::vector<Bucket> buckets_;
  std::vector<size_t> bucket_of_, slot_of_;
  std::vector<bool> arrived_;
  std::vector<unsigned> hooks_;
  size_t next_launch_ = 0, next_retire_ = 0;
  torch::TensorOptions reduce_options_;
  int64_t transient_ = 0, peak_transient_ = 0;
  std::optional<size_t> last_arrived_;
  bool armed_ = false;
  int zero_stage_ = 0;  // 0: replicated sums into the targets; 1, 2: sharded
};

}  // namespace loom
