// What an export reads from a Loom checkpoint: the model's config and its stored weights, opened
// (and validated) once, then read one tensor at a time.
#pragma once
#include <torch/torch.h>

#include <string>

#include "runtime/core/config.h"
#include "runtime/core/safetensors.h"

namespace loom {

struct CheckpointSource {
  explicit CheckpointSource(const std::string& checkpoint);  // a checkpoint folder or a run dir
  std::string dir;  // the checkpoint folder it resolved to
  ModelConfig model;
  SafetensorsFile weights;
};

// "f32" | "bf16" | "f16" -> the dtype an export writes.
torch::ScalarType export_dtype(const std::string& name);

}  // namespace loom
