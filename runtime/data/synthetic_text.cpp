#include "runtime/data/synthetic_text.h"

#include <algorithm>
#include <cmath>

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

int64_t document_length(std::mt19937_64& rng, int64_t min_len, int64_t max_len, int exponent) {
  const double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
  const double span = std::log(static_cast<double>(max_len) / static_cast<double>(min_len));
  double power = 1;  // u^exponent by products, so exponent 2 is exactly u * u
  for (int i = 0; i < exponent; ++i) power *= u;
  const auto length = static_cast<int64_t>(std::round(static_cast<double>(min_len) * std::exp(span * power)));
  return std::clamp(length, min_len, max_len);
}

}  // namespace loom
