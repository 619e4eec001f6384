// The training loop: set up the run (training_run.h), then step after step (train_step.h) with
// metrics, evaluation, checkpoints and the ranks' agreement to stop at every step boundary.
#pragma once
#include <cstdint>
#include <string>

#include "parallel/mesh.h"
#include "runtime/core/config.h"

namespace loom {

struct TrainOptions {
  std::string resume;  // "" (fresh run), "auto" (latest checkpoint of run.dir, if any), or a path
};

struct TrainSummary {
  int64_t steps_done = 0;
  double last_loss = 0;
  std::string checkpoint;  // the last checkpoint written
  bool preempted = false;  // stopped early by SIGTERM/SIGUSR1 after saving
};

// The config's dataset (data.path), checked against the model's vocabulary.
struct TokenDataset;
TokenDataset load_training_data(const Config& config);

// Runs on the ranks the process was launched with (mpirun / srun), or as one process.
TrainSummary train(const Config& config, const TrainOptions& options = {});

// Throws when the mesh and the config combine what this version cannot train yet (tensor
// parallelism with LaCT, Muon or chunk-wise backprop), or what cannot work (tp not dividing the MLP).
void check_trainable(const Config& config, const MeshShape& shape);

}  // namespace loom
