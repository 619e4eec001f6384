#include "runtime/export/byte_level_vocab.h"

#include <nlohmann/json.hpp>

#include "runtime/core/error.h"
#include "runtime/data/tokenizer.h"

namespace loom {
namespace {

bool printable(int byte) { return (byte >= '!' && byte <= '~') || (byte >= 0xA1 && byte <= 0xAC) || (byte >= 0xAE && byte <= 0xFF); }

// Printable bytes stand for themselves; the others (controls, space, DEL, NBSP, soft hyphen) are
// moved to code points 256 and up, in byte order.
std::string byte_character(int byte) {
  int code = byte;
  if (!printable(byte)) {
    code = 256;
    for (int b = 0; b < byte; ++b) code += printable(b) ? 0 : 1;
  }
  std::string utf8;  // code < 0x800: one or two bytes
  if (code < 0x80) {
    utf8 += static_cast<char>(code);
  } else {
    utf8 += static_cast<char>(0xC0 | (code >> 6));
    utf8 += static_cast<char>(0x80 | (code & 0x3F));
  }
  return utf8;
}

nlohmann::json byte_level_options() {
  return {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}, {"use_regex", false}};
}

}  // namespace

std::vector<std::string> byte_level_tokens(int64_t vocab_size) {
  check_byte_level_vocab(vocab_size, "the tokenizer");
  std::vector<std::string> t;
  for (int b = 0; b < 256; ++b) t.push_back(byte_character(b));
  t.insert(t.end(), {"<|bos|>", "<|eos|>", "<|pad|>"});
  for (int64_t id = tokenizer::kVocabSize; id < vocab_size; ++id) t.push_back("<|unused_" + std::to_string(id) + "|>");
  return t;
}

void check_byte_level_vocab(int64_t vocab_size, const std::string& what) {
  check(vocab_size >= tokenizer::kVocabSize,
        what + ": the model's vocab_size is " + std::to_string(vocab_size) + ", smaller than Loom's byte-level tokenizer (" +
            std::to_string(tokenizer::kVocabSize) + " ids); export models trained with that tokenizer");
}

std::string hf_tokenizer_json(int64_t vocab_size) {
  const auto tokens = byte_level_tokens(vocab_size);
  nlohmann::ordered_json vocab, added = nlohmann::json::array();
  for (int id = 0; id < 256; ++id) vocab[tokens[id]] = id;
  for (int64_t id = 256; id < vocab_size; ++id) {
    added.push_back({{"id", id}, {"content", tokens[id]}, {"single_word", false}, {"lstrip", false}, {"rstrip", false},
                     {"normalized", false}, {"special", true}});
  }
  const nlohmann::ordered_json j = {
      {"version", "1.0"}, {"truncation", nullptr}, {"padding", nullptr}, {"added_tokens", added},
      {"normalizer", nullptr}, {"pre_tokenizer", byte_level_options()}, {"post_processor", nullptr},
      {"decoder", byte_level_options()},
      {"model", {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"continuing_subword_prefix", nullptr},
                 {"end_of_word_suffix", nullptr}, {"fuse_unk", false}, {"byte_fallback", false}, {"ignore_merges", false},
                 {"vocab", vocab}, {"merges", nlohmann::json::array()}}}};
  return j.dump(2) + "\n";
}

std::string hf_tokenizer_config_json(int64_t max_length) {
  const auto t = byte_level_tokens(tokenizer::kVocabSize);
  const nlohmann::ordered_json j = {{"tokenizer_class", "PreTrainedTokenizerFast"}, {"bos_token", t[tokenizer::kBos]},
                                    {"eos_token", t[tokenizer::kEos]}, {"pad_token", t[tokenizer::kPad]},
                                    {"add_bos_token", false}, {"add_eos_token", false}, {"model_max_length", max_length},
                                    {"clean_up_tokenization_spaces", false}};
  return j.dump(2) + "\n";
}

std::string hf_special_tokens_map_json() {
  const auto t = byte_level_tokens(tokenizer::kVocabSize);
  const nlohmann::ordered_json j = {{"bos_token", t[tokenizer::kBos]}, {"eos_token", t[tokenizer::kEos]}, {"pad_token", t[tokenizer::kPad]}};
  return j.dump(2) + "\n";
}

}  // namespace loom
