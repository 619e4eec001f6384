#include "runtime/export/gguf_export.h"

#include <regex>

#include "runtime/core/error.h"
#include "runtime/data/tokenizer.h"
#include "runtime/export/byte_level_vocab.h"
#include "runtime/export/checkpoint_source.h"
#include "runtime/export/gguf_file.h"

namespace loom {
namespace {

// llama_ftype of a file whose matrices are all `dtype`.
uint32_t file_type(torch::ScalarType dtype) {
  return dtype == torch::kFloat32 ? 0 : dtype == torch::kFloat16 ? 1 : 32;
}

std::vector<std::pair<std::string, GgufValue>> llama_metadata(const ModelConfig& m, torch::ScalarType dtype) {
  const auto u32 = [](int64_t v) { return GgufValue(static_cast<uint32_t>(v)); };
  // Token types: 1 normal (the bytes), 3 control (BOS, EOS, PAD), 5 unused (vocabulary padding).
  std::vector<int32_t> types(m.vocab_size, 5);
  for (int64_t id = 0; id < tokenizer::kVocabSize; ++id) types[id] = id < 256 ? 1 : 3;
  return {{"general.architecture", std::string("llama")},
          {"general.name", std::string("loom")},
          {"general.file_type", u32(file_type(dtype))},
          {"llama.vocab_size", u32(m.vocab_size)},
          {"llama.context_length", u32(m.max_seq_len)},
          {"llama.embedding_length", u32(m.d_model)},
          {"llama.block_count", u32(m.n_layers)},
          {"llama.feed_forward_length", u32(m.ffn_dim())},
          {"llama.rope.dimension_count", u32(m.head_dim())},
          {"llama.attention.head_count", u32(m.n_heads)},
          {"llama.attention.head_count_kv", u32(m.n_kv_heads)},
          {"llama.attention.layer_norm_rms_epsilon", static_cast<float>(m.norm_eps)},
          {"llama.rope.freq_base", static_cast<float>(m.rope_theta)},
          {"tokenizer.ggml.model", std::string("gpt2")},
          {"tokenizer.ggml.pre", std::string("default")},
          {"tokenizer.ggml.tokens", byte_level_tokens(m.vocab_size)},
          {"tokenizer.ggml.token_type", types},
          {"tokenizer.ggml.merges", std::vector<std::string>{}},
          {"tokenizer.ggml.bos_token_id", u32(tokenizer::kBos)},
          {"tokenizer.ggml.eos_token_id", u32(tokenizer::kEos)},
          {"tokenizer.ggml.padding_token_id", u32(tokenizer::kPad)},
          {"tokenizer.ggml.add_bos_token", false}};
}

}  // namespace

torch::Tensor rope_rows_to_pairs(const torch::Tensor& w, int64_t heads, bool inverse) {
  const int64_t half = w.size(0) / heads / 2;
  if (inverse) return w.reshape({heads, half, 2, -1}).transpose(1, 2).reshape(w.sizes());
  return w.reshape({heads, 2, half, -1}).transpose(1, 2).reshape(w.sizes());
}

std::string gguf_tensor_name(const std::string& hf) {
  static const std::vector<std::pair<std::regex, std::string>> rules = {
      {std::regex(R"(model\.embed_tokens\.weight)"), "token_embd.weight"},
      {std::regex(R"(model\.norm\.weight)"), "output_norm.weight"},
      {std::regex(R"(lm_head\.weight)"), "output.weight"},
      {std::regex(R"(model\.layers\.(\d+)\.self_attn\.q_proj\.weight)"), "blk.$1.attn_q.weight"},
      {std::regex(R"(model\.layers\.(\d+)\.self_attn\.k_proj\.weight)"), "blk.$1.attn_k.weight"},
      {std::regex(R"(model\.layers\.(\d+)\.self_attn\.v_proj\.weight)"), "blk.$1.attn_v.weight"},
      {std::regex(R"(model\.layers\.(\d+)\.self_attn\.o_proj\.weight)"), "blk.$1.attn_output.weight"},
      {std::regex(R"(model\.layers\.(\d+)\.mlp\.gate_proj\.weight)"), "blk.$1.ffn_gate.weight"},
      {std::regex(R"(model\.layers\.(\d+)\.mlp\.up_proj\.weight)"), "blk.$1.ffn_up.weight"},
      {std::regex(R"(model\.layers\.(\d+)\.mlp\.down_proj\.weight)"), "blk.$1.ffn_down.weight"},
      {std::regex(R"(model\.layers\.(\d+)\.input_layernorm\.weight)"), "blk.$1.attn_norm.weight"},
      {std::regex(R"(model\.layers\.(\d+)\.post_attention_layernorm\.weight)"), "blk.$1.ffn_norm.weight"}};
  for (const auto& [pattern, name] : rules) {
    if (std::regex_match(hf, pattern)) return std::regex_replace(hf, pattern, name);
  }
  fail("parameter '" + hf + "' has no llama.cpp counterpart: this model cannot be exported to GGUF");
}

void export_gguf(const std::string& checkpoint, const std::string& out_path, torch::ScalarType dtype) {
  const CheckpointSource source(checkpoint);
  const ModelConfig& m = source.model;
  check_byte_level_vocab(m.vocab_size, "GGUF export of '" + checkpoint + "' (llama.cpp needs the tokenizer in the file)");
  const std::vector<std::string> names = source.weights.names();
  std::vector<GgufTensorInfo> infos;
  for (const auto& name : names) {
    const auto& shape = source.weights.shape(name);
    infos.push_back({gguf_tensor_name(name), shape, shape.size() == 1 ? torch::kFloat32 : dtype, 0});
  }
  write_gguf(out_path, llama_metadata(m, dtype), infos, [&](size_t i) {
    auto w = source.weights.load(names[i]);
    if (names[i].find("self_attn.q_proj") != std::string::npos) w = rope_rows_to_pairs(w, m.n_heads);
    if (names[i].find("self_attn.k_proj") != std::string::npos) w = rope_rows_to_pairs(w, m.n_kv_heads);
    return w.to(infos[i].dtype);
  });
}

}  // namespace loom
