// A Hugging Face Llama directory (config.json + model.safetensors or shards with an index;
// f32/bf16/f16) as a Loom checkpoint, so a published model can continue training on long context.
// What Loom's Llama does not implement (biases, RoPE scaling, other architectures or activations)
// is an error naming the field.
#pragma once
#include <string>

#include "runtime/core/config.h"

namespace loom {

// The model section equivalent to the directory's config.json.
ModelConfig model_config_from_hf(const std::string& hf_dir);

// Writes <out_run_dir>/checkpoints/step-0 (weights in float32, fresh optimizer state) and returns
// the model config, which a run that starts from it (run.init_from or --resume) must use.
ModelConfig import_hf(const std::string& hf_dir, const std::string& out_run_dir);

}  // namespace loom
