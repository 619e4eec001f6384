// Loom's byte-level tokenizer (ids 0-255 = bytes, then BOS, EOS, PAD) written in the conventions of
// other tokenizers, so a reader of an exported model gets the same ids as Loom:
// - GPT-2's byte-to-character table turns each byte into one printable character; a byte-level BPE
//   with those 256 characters as its vocabulary and no merges maps text to exactly its bytes. Both
//   Hugging Face `tokenizers` and llama.cpp's "gpt2" tokenizer work this way.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace loom {

// The token strings of a model with `vocab_size` ids (at least 259), index = id: the byte
// characters (UTF-8), "<|bos|>", "<|eos|>", "<|pad|>", then "<|unused_N|>" for ids a model
// rounded its vocabulary up to.
std::vector<std::string> byte_level_tokens(int64_t vocab_size);

// Throws unless a model of `vocab_size` can use Loom's byte-level tokenizer.
void check_byte_level_vocab(int64_t vocab_size, const std::string& what);

// tokenizer.json, tokenizer_config.json and special_tokens_map.json of a Hugging Face directory.
std::string hf_tokenizer_json(int64_t vocab_size);
std::string hf_tokenizer_config_json(int64_t max_length);
std::string hf_special_tokens_map_json();

}  // namespace loom
