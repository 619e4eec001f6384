// What an export reads from a Loom checkpoint: the model's config and its stored weights, opened
// (and validated) once, then read one tensor at a time.
#pragma once
#include <torch/torch.h>

#include <string>

#include "runtime/core/config.h"
#include "runtime/train/checkpoint.h"
#include "runtime/train/checkpoint_tensors.h"

namespace loom {

struct CheckpointSource {
  explicit CheckpointSource(const std::string& checkpoint);  // a checkpoint folder or a run dir
  explicit CheckpointSource(const CheckpointMeta& meta);
  std::string dir;  // the checkpoint folder it resolved to
  ModelConfig model;
  CheckpointTensors weights;  // whole, whichever ranks wrote them
};

// "f32" | "bf16" | "f16" -> the dtype an export writes.
torch::ScalarType export_dtype(const std::string& name);

}  // namespace loom
