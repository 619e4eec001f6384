// ZeRO stages 1 and 2 (Rajbhandari et al., "ZeRO: Memory Optimizations Toward Training Trillion
// Parameter Models", SC 2020) over a group of replicas that hold the same parameters (Loom's dp x sp
// ranks), with AdamW.
//
// The gradients are reduced in buckets as GradientReducer does, each bucket padded to a multiple of
// the group's size, and rank r owns part r of every bucket: it alone keeps the master weights and
// AdamW moments of those elements and steps them with its part of the summed gradient; the updated
// parts are then all-gathered into every rank's parameters. Stage 1 takes its part from an
// all-reduce; stage 2 from a reduce-scatter after every backward of the step, which moves half the
// bytes, never gives a rank the whole sum and keeps no whole gradient between backwards. Each part
// is stepped with AdamW's own arithmetic (adamw_update) on slices, so a step equals the replicated
// optimizer's up to the order in which the gradient norm is summed.
//
// Master weights are kept apart only when they are wider than the parameters (float32 masters of
// bfloat16 ones); otherwise the parameters are the masters and each rank steps its slices of them
// in place, as the replicated optimizer does.
//
// Checkpoints see whole tensors under AdamW's names: each rank writes its parts as pieces of them
// (master_pieces(), state_pieces()) and load() reads the ranges of this rank's parts, so a
// checkpoint moves between stages and degrees.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <string>
#include <vector>

#include "optim/adamw.h"
#include "parallel/data/gradient_reducer.h"
#include "runtime/core/named_tensors.h"

namespace loom {

class ZeroOptimizer {
 public:
  // params: the model's parameters, named, all of one dtype; master: the dtype of the master weights
  // and moments; reduce: of the gradient sums. Every rank starts from its own parameters
  // (take_parameters() after they change).
  ZeroOptimizer(const NamedTensors& params, int stage, const AdamWOptions& options, c10::ScalarType master,
                c10::ScalarType reduce, Communicator& group, int64_t bucket_bytes);

  // The backprop arms it before the step's last backward; finish() it after.
  GradientReducer& reducer() { return reducer_; }
  // After finish(): the sum of squares of this rank's part of the summed gradient (add them over the
  // group for the norm), and their scaling by max_norm / norm where norm exceeds max_norm (0: never).
  double grad_norm_squared() const;
  void scale_gradients(double norm, double max_norm);
  // AdamW on this rank's parts, then every rank's parameters <- the all-gathered masters.
  void step(double lr);
  // This rank's master parts <- the parameters (after they were broadcast or set whole).
  void take_parameters();

  // This rank's parts as pieces of the whole tensors, without communication: the masters under the
  // parameters' names, AdamW's state as AdamW::state() names it; the group's rank 0 adds the step
  // count.
  TensorPieces master_pieces() const;
  TensorPieces state_pieces() const;

  // Elements [begin, begin + count) of the whole tensor `name` (of `shape`), flat.
  using ReadRange = std::function<torch::Tensor(const std::string& name, const std::vector<int64_t>& shape, int64_t begin,
                                                int64_t count)>;
  // This rank's parts read from `masters` and `state` (null: the moments start at zero), then the
  // parameters from the masters. Collective.
  void load(const ReadRange& masters, const ReadRange& state);
  // The same from whole tensors.
  void load(const NamedTensors& masters, const NamedTensors& state);

  // Bytes of master weights (when separate) and moments this rank holds.
  int64_t state_bytes() const;
  // Bytes of reduced gradients this rank keeps between backwards (GradientReducer::held_bytes).
  int64_t gradient_bytes() const { return reducer_.held_bytes(); }
  int stage() const { return stage_; }
  c10::ScalarType master_dtype() const { return master_; }

 private:
  // Elements [param_begin, + count) of parameter `param` sit at `offset` of this rank's part.
  struct Segment {
    size_t param;
    int64_t param_begin, count, offset;
  };
  struct Part {
    torch::Tensor master;  // only with separate masters
    torch::Tensor exp_avg, exp_avg_sq;
    std::vector<Segment> segments;
  };

  torch::Tensor param_slice(const Segment& s) const;
  // Where a segment's master weights live: the part's own masters, or the parameter itself.
  torch::Tensor master_slice(const Part& part, const Segment& s) const;

  // Every rank's parameters <- the masters of every rank, bucket by bucket.
  void gather_into_parameters();
  // This rank's parts of the whole tensors `read` gives (named after the parameters + `suffix`) into
  // one kind of per-part tensor.
  void read_parts(const ReadRange& read, const std::string& suffix, torch::Tensor Part::*which);
  // One kind of per-part tensor as pieces of the tensors named after the parameters + `suffix`.
  TensorPieces pieces(const std::string& suffix, const std::function<torch::Tensor(const Part&, const Segment&)>& slice) const;

  std::vector<std::string> names_;
  std::vector<torch::Tensor> params_;
  int stage_;
  c10::ScalarType master_;
  bool separate_;  // masters wider than the parameters, kept per part
  AdamWOptions options_;
  GradientReducer reducer_;
  std::vector<Part> parts_;  // one per bucket
  int64_t steps_ = 0;
};

}  // namespace loom
