// Checkpoints: <run.dir>/checkpoints/step-N/ holding
//   model.safetensors      full (unsharded) weights under Hugging Face names
//   optimizer.safetensors  optimizer moments and step count, and the torch RNG state
//   state.json             format version, step, data cursor
//   config.yaml            the resolved config of the run
// A checkpoint is written into a temporary folder and renamed into place, then the `latest` pointer
// file is replaced the same way: a crash at any moment leaves the previous checkpoint whole and
// `latest` pointing at it. Only the newest keep_last checkpoints are kept.
#pragma once
#include <cstdint>
#include <string>

#include "parallel/tensor/tensor_shard.h"
#include "runtime/core/config.h"
#include "runtime/core/named_tensors.h"
#include "runtime/data/batch_loader.h"

namespace loom {

constexpr int64_t kCheckpointVersion = 1;

struct CheckpointMeta {
  std::string dir;
  int64_t step = 0;
  LoaderCursor cursor;
  Config config;  // the run's resolved config as stored
};

// The folder checkpoint `step` of a run is written to.
std::string checkpoint_dir(const std::string& run_dir, int64_t step);

// Writes checkpoint `step` and returns its folder. LOOM_FAULT=checkpoint-write@<step> aborts the
// process half-way through writing that step's checkpoint (the crash-safety test's switch).
// `weights` are the model's weights under their Hugging Face names (the trainer's master weights),
// `optimizer_state` the optimizer's state() (checkpoints do not depend on which optimizer); both may
// live on any device.
std::string save_checkpoint(const std::string& run_dir, int64_t step, const NamedTensors& weights,
                            const NamedTensors& optimizer_state, const LoaderCursor& cursor, const Config& config);

// Removes all but the newest `keep_last` checkpoints.
void prune_checkpoints(const std::string& run_dir, int64_t keep_last);

// "auto": the run dir's latest checkpoint (empty string when there is none); otherwise `path` must
// be a checkpoint folder (or a run dir with a latest pointer).
std::string resolve_checkpoint(const std::string& path, const std::string& run_dir);

CheckpointMeta read_checkpoint_meta(const std::string& dir);

// Copies the stored weights into `into` (a model's parameter_list(), or master weights), casting to
// their dtype and device, and taking this rank's slice of the tensors `layout` splits (tensor
// parallelism; checkpoints hold whole tensors); a missing, extra or differently shaped tensor is an
// error that names it.
void load_weights(const std::string& dir, const NamedTensors& into, const TensorLayout& layout = {});

// Restores the torch RNG state and returns the optimizer state to give the optimizer's load_state().
NamedTensors load_optimizer_state(const std::string& dir);

}  // namespace loom
