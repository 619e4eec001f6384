// One training run set up and ready to step: the mesh's groups, the model on its device with its
// parallel plan, the weight update (gradient reduction, optimizer, master weights) and schedule, the
// data and its loader and the backprop strategy; plus what the loop asks of it between steps (resume,
// agreement to stop, evaluation, checkpoints). One step itself is train_step.h.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "optim/lr_schedule.h"
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
#include "runtime/train/weight_update.h"

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
  // The gradients' reduction, the optimizer and the master weights, replicated or ZeRO-sharded.
  std::unique_ptr<WeightUpdate> update;
  LrSchedule schedule;
  const std::vector<int64_t> train_docs, val_docs;
  BatchLoader loader;
  std::unique_ptr<Backprop> backprop;
  // Where each step's documents are computed under parallel.placement: zeppelin (null: uniform).
  std::unique_ptr<StepPlacement> placement;

 private:
  std::string last_checkpoint_;
};

}  // namespace loom
