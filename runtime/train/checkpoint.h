// Checkpoints: <run.dir>/checkpoints/step-N/ holding
//   model*.safetensors      the weights under Hugging Face names
//   optimizer*.safetensors  the optimizer's state (moments, step count) and the torch RNG state
//   state.json              format version, step, data cursor, how many ranks wrote it
//   config.yaml             the resolved config of the run
// One logical format whatever the layout: every rank writes the tensors, or pieces of tensors, it
// holds into files of its own, in parallel (checkpoint_tensors.h), and a reader sees whole tensors,
// so a checkpoint resumes on any layout. The ranks write into a temporary folder that rank 0 renames
// into place once every rank has finished, then the `latest` pointer file is replaced the same way:
// a crash of any rank at any moment leaves the previous checkpoint whole and `latest` pointing at
// it. Only the newest keep_last checkpoints are kept.
#pragma once
#include <cstdint>
#include <string>

#include "parallel/comm/communicator.h"
#include "parallel/tensor/tensor_shard.h"
#include "runtime/core/config.h"
#include "runtime/core/named_tensors.h"
#include "runtime/data/batch_loader.h"
#include "runtime/train/checkpoint_tensors.h"

namespace loom {

constexpr int64_t kCheckpointVersion = 1;

struct CheckpointMeta {
  std::string dir;
  int64_t step = 0;
  int64_t shares = 1;  // ranks that wrote it: files of each kind
  LoaderCursor cursor;
  Config config;  // the run's resolved config as stored
};

// The folder checkpoint `step` of a run is written to.
std::string checkpoint_dir(const std::string& run_dir, int64_t step);

// What one rank writes of a checkpoint: the weights (the trainer's master weights) and the
// optimizer's state (checkpoints do not depend on which optimizer), whole or in pieces, on any
// device.
struct CheckpointShare {
  TensorPieces model, optimizer;
};

// Writes checkpoint `step` with every rank of `world` writing its share, and returns its folder.
// Collective. LOOM_FAULT=checkpoint-write@<step>[:<rank>] aborts the process (of that rank) between
// its two files (the crash-safety tests' switch).
std::string save_checkpoint(const std::string& run_dir, int64_t step, const CheckpointShare& mine, const LoaderCursor& cursor,
                            const Config& config, Communicator& world);

// The same from one process that holds every tensor whole (import, tests).
std::string save_checkpoint(const std::string& run_dir, int64_t step, const NamedTensors& weights,
                            const NamedTensors& optimizer_state, const LoaderCursor& cursor, const Config& config);

// The whole tensors of `all` that writer `rank` of `ranks` writes when they share the writing of
// tensors every one of them holds, balanced by bytes.
TensorPieces writer_share(const NamedTensors& all, int64_t rank, int64_t ranks);

// Removes all but the newest `keep_last` checkpoints.
void prune_checkpoints(const std::string& run_dir, int64_t keep_last);

// "auto": the run dir's latest checkpoint (empty string when there is none); otherwise `path` must
// be a checkpoint folder (or a run dir with a latest pointer).
std::string resolve_checkpoint(const std::string& path, const std::string& run_dir);

CheckpointMeta read_checkpoint_meta(const std::string& dir);

// The checkpoint's weights ("model") or optimizer state ("optimizer").
CheckpointTensors checkpoint_tensors(const CheckpointMeta& meta, const std::string& kind);

// Copies the stored weights into `into` (a model's parameter_list(), or master weights), casting to
// their dtype and device, and taking this rank's slice of the tensors `layout` splits (tensor
// parallelism; checkpoints hold whole tensors); a missing, extra or differently shaped tensor is an
// error that names it.
void load_weights(const std::string& dir, const NamedTensors& into, const TensorLayout& layout = {});

// Restores the torch RNG state the checkpoint's optimizer files hold.
void restore_rng_state(const CheckpointTensors& optimizer);

}  // namespace loom
