// One training run set up and ready to step: the mesh's groups, the model on its device with its
// parallel plan, the master weights, the optimizer and schedule, the data and its loader, the
// gradient reducer and the backprop strategy; plus what the loop asks of it between steps (resume,
// agreement to stop, evaluation, checkpoints). One step itself is train_step.h.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "optim/lr_schedule.h"
#include "optim/master_weights.h"
#include "optim/training_optimizer.h"
#include "parallel/data/gradient_reducer.h"
#include "parallel/mesh.h"
#include "parallel/sequence/attention_choice.h"
#include "parallel/tensor/boundary_worker.h"
#include "runtime/core/config.h"
#include "runtime/core/precision.h"
#include "runtime/data/batch_loader.h"
#include "runtime/data/token_dataset.h"
#include "runtime/model/llama.h"
#include "runtime/train/backprop.h"
#include "runtime/train/metrics_log.h"
#include "runtime/train/step_placement.h"

namespace loom {

class TrainingRun {
 public:
  TrainingRun(const Config& config, const TokenDataset& data, Mesh& mesh, c10::Device device);

  // Continues from checkpoint `dir`; returns its step.
  int64_t resume(const std::string& dir);
  // Every replica starts from the weights of the first rank holding the same slices, whatever
  // produced them (seeded init, init_from, resume).
  void synchronise_weights();
  void print_start() const;
  // True on every rank when any rank asks to stop, so all of them save the same step and exit.
  bool agree_to_stop(bool mine);
  // Rank 0 evaluates on the held-out documents (with the other ranks of its tensor-parallel group);
  // the others wait for it at the next collective.
  // `log` is rank 0's (null elsewhere).
  void evaluate_now(int64_t step, MetricsLog* log);
  // Writes the checkpoint of `step` (rank 0, whole tensors gathered from its tensor-parallel group;
  // every rank waits for it) and returns its folder.
  const std::string& checkpoint(int64_t step);
  // The global norm of the masters' gradients (slices summed over the tensor-parallel group),
  // clipped to train.grad_clip; returns the norm before clipping.
  double clip_gradients();
  // Waits for the step's gradient reductions: the masters' gradients then hold the sums.
  void finish_reductions();
  const std::string& last_checkpoint() const { return last_checkpoint_; }

  const Config& config;
  const TokenDataset& data;
  Mesh& mesh;
  const Precision precision;
  const AttentionChoice attention;
  // Runs TokenWeave's residual boundaries beside the training thread (null when tokens are not split).
  std::unique_ptr<BoundaryWorker> boundary_worker;
  TensorLayout layout;  // how tensor parallelism split the parameters (empty without it)
  Llama model;
  MasterWeights masters;  // what the optimizer steps and checkpoints hold
  TrainingOptimizer optimizer;
  LrSchedule schedule;
  const std::vector<int64_t> train_docs, val_docs;
  BatchLoader loader;
  // Gradients summed over the ranks holding the same parameters: the tensor-parallel slices over
  // the dp x sp replicas, the parameters every rank holds whole (the norms) over every rank.
  std::vector<std::unique_ptr<GradientReducer>> reducers;
  std::unique_ptr<Backprop> backprop;
  // Where each step's documents are computed under parallel.placement: zeppelin (null: uniform).
  std::unique_ptr<StepPlacement> placement;

 private:
  bool holds_whole(const std::string& name) const { return !shard_of(layout, name).split(); }
  std::string last_checkpoint_;
};

}  // namespace loom
