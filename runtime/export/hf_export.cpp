#include "runtime/export/hf_export.h"

#include <nlohmann/json.hpp>

#include <filesystem>

#include "runtime/core/error.h"
#include "runtime/core/text_file.h"
#include "runtime/data/tokenizer.h"
#include "runtime/export/byte_level_vocab.h"
#include "runtime/export/checkpoint_source.h"

namespace loom {
namespace {

namespace fs = std::filesystem;

std::string torch_dtype_name(torch::ScalarType t) {
  return t == torch::kFloat32 ? "float32" : t == torch::kBFloat16 ? "bfloat16" : "float16";
}

// Consecutive tensors, each group at most `limit` bytes (a larger tensor gets a shard of its own).
std::vector<std::vector<TensorEntry>> shards(const std::vector<TensorEntry>& entries, uint64_t limit) {
  std::vector<std::vector<TensorEntry>> out(1);
  uint64_t bytes = 0;
  for (const auto& e : entries) {
    if (!out.back().empty() && bytes + e.bytes() > limit) {
      out.emplace_back();
      bytes = 0;
    }
    out.back().push_back(e);
    bytes += e.bytes();
  }
  return out;
}

std::string shard_name(size_t index, size_t count) {
  if (count == 1) return "model.safetensors";
  char name[64];
  std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", index + 1, count);
  return name;
}

}  // namespace

std::string hf_config_json(const ModelConfig& m, torch::ScalarType dtype) {
  const nlohmann::ordered_json j = {
      {"architectures", {"LlamaForCausalLM"}}, {"model_type", "llama"}, {"vocab_size", m.vocab_size},
      {"hidden_size", m.d_model}, {"intermediate_size", m.ffn_dim()}, {"num_hidden_layers", m.n_layers},
      {"num_attention_heads", m.n_heads}, {"num_key_value_heads", m.n_kv_heads}, {"head_dim", m.head_dim()},
      {"hidden_act", "silu"}, {"max_position_embeddings", m.max_seq_len}, {"rms_norm_eps", m.norm_eps},
      {"rope_theta", m.rope_theta}, {"rope_scaling", nullptr}, {"tie_word_embeddings", m.tie_embeddings},
      {"attention_bias", false}, {"attention_dropout", 0.0}, {"mlp_bias", false}, {"pretraining_tp", 1},
      {"initializer_range", m.init_std}, {"use_cache", true}, {"bos_token_id", tokenizer::kBos},
      {"eos_token_id", tokenizer::kEos}, {"pad_token_id", tokenizer::kPad}, {"torch_dtype", torch_dtype_name(dtype)}};
  return j.dump(2) + "\n";
}

void export_hf(const std::string& checkpoint, const std::string& out_dir, torch::ScalarType dtype, uint64_t shard_bytes) {
  const CheckpointSource source(checkpoint);
  check_byte_level_vocab(source.model.vocab_size, "hf export of '" + checkpoint + "'");
  const fs::path out(out_dir), tmp(out_dir + ".tmp");
  check(!fs::exists(out), "'" + out_dir + "' already exists: choose a new --out (an export never overwrites)");
  fs::remove_all(tmp);
  fs::create_directories(tmp);

  std::vector<TensorEntry> entries;
  for (const auto& name : source.weights.names()) entries.push_back({name, dtype, source.weights.shape(name)});
  const auto groups = shards(entries, shard_bytes);
  nlohmann::ordered_json weight_map;
  uint64_t total = 0;
  for (size_t s = 0; s < groups.size(); ++s) {
    const auto& group = groups[s];
    write_safetensors((tmp / shard_name(s, groups.size())).string(), group,
                      [&](size_t i) { return source.weights.load(group[i].name).to(dtype); }, {{"format", "pt"}});
    for (const auto& e : group) {
      weight_map[e.name] = shard_name(s, groups.size());
      total += e.bytes();
    }
  }
  if (groups.size() > 1) {
    const nlohmann::ordered_json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
    write_text_file((tmp / "model.safetensors.index.json").string(), index.dump(2) + "\n");
  }
  write_text_file((tmp / "config.json").string(), hf_config_json(source.model, dtype));
  const nlohmann::ordered_json generation = {{"bos_token_id", tokenizer::kBos}, {"eos_token_id", tokenizer::kEos},
                                             {"pad_token_id", tokenizer::kPad}};
  write_text_file((tmp / "generation_config.json").string(), generation.dump(2) + "\n");
  write_text_file((tmp / "tokenizer.json").string(), hf_tokenizer_json(source.model.vocab_size));
  write_text_file((tmp / "tokenizer_config.json").string(), hf_tokenizer_config_json(source.model.max_seq_len));
  write_text_file((tmp / "special_tokens_map.json").string(), hf_special_tokens_map_json());
  fs::rename(tmp, out);
}

}  // namespace loom
