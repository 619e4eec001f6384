#include "runtime/export/hf_import.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>

#include "optim/adamw.h"
#include "runtime/core/error.h"
#include "runtime/core/safetensors.h"
#include "runtime/model/llama.h"
#include "runtime/train/checkpoint.h"

namespace loom {
namespace {

namespace fs = std::filesystem;

nlohmann::json read_json(const fs::path& path) {
  std::ifstream in(path);
  check(in.good(), "cannot read '" + path.string() + "': a Hugging Face model directory has a config.json");
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    fail("'" + path.string() + "' is not valid JSON (" + e.what() + ")");
  }
}

// The field's value, or `fallback` when absent; a wrong type is an error naming it.
template <class T>
T field(const nlohmann::json& j, const std::string& key, const std::string& file, std::optional<T> fallback = {}) {
  if (!j.contains(key) || j[key].is_null()) {
    check(fallback.has_value(), file + ": field '" + key + "' is missing");
    return *fallback;
  }
  try {
    return j[key].get<T>();
  } catch (const nlohmann::json::exception&) {
    fail(file + ": field '" + key + "' has the wrong type (" + j[key].dump() + ")");
  }
}

// Tensor name -> the file holding it, for single and sharded checkpoints.
std::map<std::string, std::string> weight_files(const fs::path& dir) {
  std::map<std::string, std::string> out;
  const fs::path index = dir / "model.safetensors.index.json";
  if (fs::exists(index)) {
    const auto j = read_json(index);
    check(j.contains("weight_map") && j["weight_map"].is_object(), index.string() + ": no weight_map object");
    for (const auto& [name, file] : j["weight_map"].items()) {
      check(file.is_string(), index.string() + ": weight_map['" + name + "'] is not a file name");
      const std::string f = file.get<std::string>();
      check(f.find('/') == std::string::npos, index.string() + ": shard name '" + f + "' must be a plain file name");
      out[name] = (dir / f).string();
    }
    return out;
  }
  const fs::path single = dir / "model.safetensors";
  check(fs::exists(single), "'" + dir.string() + "' has neither model.safetensors nor model.safetensors.index.json");
  for (const auto& name : SafetensorsFile(single.string()).names()) out[name] = single.string();
  return out;
}

}  // namespace

ModelConfig model_config_from_hf(const std::string& hf_dir) {
  const fs::path path = fs::path(hf_dir) / "config.json";
  const auto j = read_json(path);
  const std::string file = path.string();
  const auto model_type = field<std::string>(j, "model_type", file, std::string());
  check(model_type == "llama", file + ": model_type '" + model_type + "' is not supported; Loom imports Llama models (model_type llama)");
  check(!field<bool>(j, "attention_bias", file, false), file + ": attention_bias is true; Loom's Llama has no attention biases");
  check(!field<bool>(j, "mlp_bias", file, false), file + ": mlp_bias is true; Loom's Llama has no MLP biases");
  check(field<std::string>(j, "hidden_act", file, std::string("silu")) == "silu", file + ": hidden_act must be silu (SwiGLU)");
  check(!j.contains("rope_scaling") || j["rope_scaling"].is_null(),
        file + ": rope_scaling " + (j.contains("rope_scaling") ? j["rope_scaling"].dump() : "") +
            " is not implemented in Loom (plain RoPE only); remove it only if the model was trained without it");
  ModelConfig m;
  m.vocab_size = field<int64_t>(j, "vocab_size", file);
  m.d_model = field<int64_t>(j, "hidden_size", file);
  m.d_ff = field<int64_t>(j, "intermediate_size", file);
  m.n_layers = field<int64_t>(j, "num_hidden_layers", file);
  m.n_heads = field<int64_t>(j, "num_attention_heads", file);
  m.n_kv_heads = field<int64_t>(j, "num_key_value_heads", file, m.n_heads);
  m.max_seq_len = field<int64_t>(j, "max_position_embeddings", file, m.max_seq_len);
  m.norm_eps = field<double>(j, "rms_norm_eps", file, m.norm_eps);
  m.rope_theta = field<double>(j, "rope_theta", file, m.rope_theta);
  m.init_std = field<double>(j, "initializer_range", file, m.init_std);
  m.tie_embeddings = field<bool>(j, "tie_word_embeddings", file, false);
  check(m.n_heads > 0 && m.d_model % m.n_heads == 0, file + ": hidden_size must be a multiple of num_attention_heads");
  const auto head_dim = field<int64_t>(j, "head_dim", file, m.d_model / m.n_heads);
  check(head_dim == m.d_model / m.n_heads, file + ": head_dim " + std::to_string(head_dim) +
                                               " differs from hidden_size / num_attention_heads; Loom derives it from those");
  return m;
}

ModelConfig import_hf(const std::string& hf_dir, const std::string& out_run_dir) {
  const ModelConfig m = model_config_from_hf(hf_dir);
  const auto files = weight_files(hf_dir);
  Llama model(m);
  std::map<std::string, std::unique_ptr<SafetensorsFile>> open;
  {
    torch::NoGradGuard no_grad;
    for (auto& item : model->named_parameters()) {
      const std::string& name = item.key();
      auto it = files.find(name);
      check(it != files.end(), "'" + hf_dir + "' has no tensor '" + name + "' that a Llama with this config.json needs");
      auto& file = open[it->second];
      if (!file) file = std::make_unique<SafetensorsFile>(it->second);
      check(file->info(name).shape == item.value().sizes().vec(),
            "'" + hf_dir + "': tensor '" + name + "' has shape " + c10::str(c10::IntArrayRef(file->info(name).shape)) +
                " but config.json implies " + c10::str(item.value().sizes()));
      item.value().copy_(file->load(name));
    }
  }
  for (const auto& [name, file] : files) {
    const bool known = model->named_parameters().contains(name) || name.find("rotary_emb.inv_freq") != std::string::npos;
    check(known, "'" + hf_dir + "' holds tensor '" + name + "' that Loom's Llama does not have (biases? another architecture?)");
  }
  Config config;
  config.model = m;
  config.run.dir = out_run_dir;
  config.train.seq_len = config.train.tokens_per_step = std::min(config.train.seq_len, m.max_seq_len);
  save_checkpoint(out_run_dir, 0, model->parameter_list(), AdamW(model->parameter_list(), {}).state(), LoaderCursor{}, config);
  return m;
}

}  // namespace loom
