#include "runtime/data/filler_text.h"

#include <algorithm>

namespace loom {

std::string filler_text(std::mt19937_64& rng, int64_t bytes) {
  static const char* const kSentences[] = {"The grass is green. ", "The sky is blue. ", "The sun is yellow. ",
                                           "Here we go. ", "There and back again. "};
  std::string text;
  std::uniform_int_distribution<int> pick(0, 4);
  while (static_cast<int64_t>(text.size()) < bytes) text += kSentences[pick(rng)];
  text.resize(static_cast<size_t>(std::max<int64_t>(0, bytes)));
  return text;
}

}  // namespace loom
