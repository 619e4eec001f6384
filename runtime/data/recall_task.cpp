#include "runtime/data/recall_task.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <set>
#include <string>

#include "runtime/core/error.h"
#include "runtime/data/synthetic_text.h"
#include "runtime/data/tokenizer.h"

namespace loom {
namespace {

std::string random_string(std::mt19937_64& rng, int64_t length, char first, int range) {
  std::uniform_int_distribution<int> pick(0, range - 1);
  std::string s;
  for (int64_t i = 0; i < length; ++i) s += static_cast<char>(first + pick(rng));
  return s;
}

std::vector<std::string> distinct_keys(std::mt19937_64& rng, const RecallOptions& o) {
  std::set<std::string> seen;
  std::vector<std::string> keys;
  while (static_cast<int64_t>(keys.size()) < o.pairs) {
    std::string key = random_string(rng, o.key_len, 'a', 26);
    if (seen.insert(key).second) keys.push_back(std::move(key));
  }
  return keys;
}

void check_options(const RecallOptions& o, int64_t section) {
  check(o.docs > 0, "recall: --docs must be positive");
  check(o.pairs > 0, "recall: --pairs must be positive");
  check(o.key_len >= 1 && o.value_len >= 1, "recall: --key-len and --value-len must be at least 1");
  check(std::pow(26.0, static_cast<double>(o.key_len)) >= static_cast<double>(o.pairs),
        "recall: " + std::to_string(o.pairs) + " distinct keys of " + std::to_string(o.key_len) +
            " letters are too many; raise --key-len or lower --pairs");
  check(o.min_len >= 2 * section, "recall: --min-len must be at least " + std::to_string(2 * section) +
                                      " bytes to hold the pairs and the queries (or lower --pairs)");
  check(o.max_len >= o.min_len, "recall: --max-len must be at least --min-len");
}

}  // namespace

TokenDataset make_recall_dataset(const RecallOptions& o) {
  const int64_t pair_bytes = o.key_len + o.value_len + 1;  // "keyvalue "
  const int64_t section = o.pairs * pair_bytes;
  check_options(o, section);
  std::mt19937_64 rng(o.seed);
  TokenDataset data;
  data.task = "recall";
  for (int64_t d = 0; d < o.docs; ++d) {
    // Log-uniform: the many short documents, dense in answers, are where a model first learns to
    // retrieve, and every band of distances is still represented.
    const int64_t length = document_length(rng, o.min_len, o.max_len, 1);
    const std::vector<std::string> keys = distinct_keys(rng, o);
    std::vector<std::string> values;
    for (int64_t p = 0; p < o.pairs; ++p) values.push_back(random_string(rng, o.value_len, '0', 10));
    std::vector<int64_t> asked(static_cast<size_t>(o.pairs));
    std::iota(asked.begin(), asked.end(), 0);
    std::shuffle(asked.begin(), asked.end(), rng);

    std::string text;
    for (int64_t p = 0; p < o.pairs; ++p) text += keys[p] + values[p] + " ";
    text += filler_text(rng, length - 2 * section);
    std::vector<AnswerSpan> spans;
    for (const int64_t p : asked) {
      text += keys[p];
      // Token positions: BOS comes first, so byte i of the text is token i + 1.
      const int64_t evidence = 1 + p * pair_bytes + o.key_len;
      spans.push_back({1 + static_cast<int64_t>(text.size()), o.value_len, evidence});
      text += values[p] + " ";
    }
    std::vector<int32_t> doc = {tokenizer::kBos};
    for (int32_t t : tokenizer::encode(text)) doc.push_back(t);
    doc.push_back(tokenizer::kEos);
    data.add_document(doc, spans);
  }
  return data;
}

}  // namespace loom
