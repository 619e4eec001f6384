#include "runtime/data/tokenizer.h"

namespace loom::tokenizer {

std::vector<int32_t> encode(const std::string& text) {
  std::vector<int32_t> ids;
  ids.reserve(text.size());
  for (unsigned char c : text) ids.push_back(c);
  return ids;
}

std::string decode(const std::vector<int32_t>& ids) {
  std::string text;
  for (int32_t id : ids)
    if (id >= 0 && id < 256) text.push_back(static_cast<char>(id));
  return text;
}

}  // namespace loom::tokenizer
