#include "runtime/export/checkpoint_source.h"

#include "runtime/core/error.h"
#include "runtime/train/checkpoint.h"

namespace loom {
namespace {

std::string resolved(const std::string& checkpoint) {
  const std::string dir = resolve_checkpoint(checkpoint, checkpoint);
  check(!dir.empty(), "'" + checkpoint + "' holds no checkpoint yet");
  return dir;
}

}  // namespace

CheckpointSource::CheckpointSource(const std::string& checkpoint) : CheckpointSource(read_checkpoint_meta(resolved(checkpoint))) {}

CheckpointSource::CheckpointSource(const CheckpointMeta& meta)
    : dir(meta.dir), model(meta.config.model), weights(checkpoint_tensors(meta, "model")) {
  check(model.lact.every == 0, "'" + dir + "' has LaCT layers (model.lact.every = " +
                                   std::to_string(model.lact.every) +
                                   "), which neither Hugging Face's Llama nor GGUF's llama can hold: export "
                                   "takes Llama models only");
}

torch::ScalarType export_dtype(const std::string& name) {
  if (name == "f32") return torch::kFloat32;
  if (name == "bf16") return torch::kBFloat16;
  check(name == "f16", "--dtype '" + name + "': choose f32, bf16 or f16");
  return torch::kFloat16;
}

}  // namespace loom
