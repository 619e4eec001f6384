// A Loom checkpoint as a Hugging Face Llama directory that `transformers` loads as
// LlamaForCausalLM: config.json, generation_config.json, model.safetensors (or shards with
// model.safetensors.index.json) and tokenizer files for Loom's byte-level tokenizer. Loom's
// parameters already carry Hugging Face names and its RoPE is the rotate-half form, so the weights
// are copied as they are, cast to the chosen dtype.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <string>

#include "runtime/core/config.h"

namespace loom {

// Writes the directory `out_dir` (through a temporary name and a rename). Tensors are grouped into
// shards of at most `shard_bytes` each (one file when everything fits).
void export_hf(const std::string& checkpoint, const std::string& out_dir, torch::ScalarType dtype, uint64_t shard_bytes);

// config.json for `model` stored in `dtype`.
std::string hf_config_json(const ModelConfig& model, torch::ScalarType dtype);

}  // namespace loom
