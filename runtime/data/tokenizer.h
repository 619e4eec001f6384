// The byte-level tokenizer: ids 0-255 are the bytes of UTF-8 text, then three specials.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace loom::tokenizer {

constexpr int32_t kBos = 256;
constexpr int32_t kEos = 257;
constexpr int32_t kPad = 258;
constexpr int32_t kVocabSize = 259;

std::vector<int32_t> encode(const std::string& text);
// Bytes come back as they were; special tokens are dropped.
std::string decode(const std::vector<int32_t>& ids);

}  // namespace loom::tokenizer
