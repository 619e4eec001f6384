#include "runtime/data/copy_task.h"

#include <random>
#include <string>

#include "runtime/core/error.h"
#include "runtime/data/synthetic_text.h"
#include "runtime/data/tokenizer.h"

namespace loom {

TokenDataset make_copy_dataset(const CopyOptions& o) {
  check(o.docs > 0, "copy: --docs must be positive");
  check(o.min_len >= 2, "copy: --min-len must be at least 2 bytes (a string of one byte and its copy)");
  check(o.max_len >= o.min_len, "copy: --max-len must be at least --min-len");
  static const std::string alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  std::mt19937_64 rng(o.seed);
  std::uniform_int_distribution<size_t> pick(0, alphabet.size() - 1);
  TokenDataset data;
  data.task = "copy";
  for (int64_t d = 0; d < o.docs; ++d) {
    const int64_t half = document_length(rng, o.min_len, o.max_len, 1) / 2;
    std::string s;
    for (int64_t i = 0; i < half; ++i) s += alphabet[pick(rng)];
    std::vector<AnswerSpan> spans;
    // Token positions: BOS comes first, so byte i of s is token i + 1 and its copy token half + i + 1.
    for (int64_t i = 0; i < half; ++i) spans.push_back({half + i + 1, 1, i + 1});
    std::vector<int32_t> doc = {tokenizer::kBos};
    for (int32_t t : tokenizer::encode(s + s)) doc.push_back(t);
    doc.push_back(tokenizer::kEos);
    data.add_document(doc, spans);
  }
  return data;
}

}  // namespace loom
