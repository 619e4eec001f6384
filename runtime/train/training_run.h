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
#include "runtime/core/config.h"
#include "runtime/core/precision.h"
#include "runtime/data/batch_loader.h"
#include "runtime/data/token_dataset.h"
#include "runtime/model/llama.h"
#include "runtime/train/backprop.h"
#include "runtime/train/metrics_log.h"

namespace loom {

class TrainingRun {
 public:
  TrainingRun(const Config& config, const TokenDataset& data, Mesh& mesh, c10::Device device);

  // Continues from checkpoint `dir`; returns its step.
  int64_t resume(const std::string& dir);
  // Every replica starts from rank 0's weights, whatever produced them (seeded init, init_from, resume).
  void synchronise_weights();
  void print_start() const;
  // True on every rank when any rank asks to stop, so all of them save the same step and exit.
  bool agree_to_stop(bool mine);
  // Rank 0 evaluates on the held-out documents; the others wait for it at the next collective.
  void evaluate_now(int64_t step, MetricsLog& log);
  // Writes the checkpoint of `step` (rank 0; every rank waits for it) and returns its folder.
  const std::string& checkpoint(int64_t step);
  const std::string& last_checkpoint() const { return last_checkpoint_; }

  const Config& config;
  const TokenDataset& data;
  Mesh& mesh;
  const Precision precision;
  Llama model;
  MasterWeights masters;  // what the optimizer steps and checkpoints hold
  TrainingOptimizer optimizer;
  LrSchedule schedule;
  const std::vector<int64_t> train_docs, val_docs;
  BatchLoader loader;
  const AttentionChoice attention;
  std::unique_ptr<GradientReducer> reducer;  // null without data or sequence parallelism
  std::unique_ptr<Backprop> backprop;

 private:
  std::string last_checkpoint_;
};

}  // namespace loom
