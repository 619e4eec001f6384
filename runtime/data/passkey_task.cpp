#include "runtime/data/passkey_task.h"

#include <cmath>
#include <random>
#include <string>

#include "runtime/core/error.h"
#include "runtime/data/synthetic_text.h"
#include "runtime/data/tokenizer.h"

namespace loom {
namespace {

struct Phrasing {
  std::string (*needle)(const std::string& key);
  std::string question;
};

Phrasing phrasing(PasskeyStyle style) {
  if (style == PasskeyStyle::kMarker) return {[](const std::string& key) { return "#" + key + " "; }, "?#"};
  return {[](const std::string& key) { return "The pass key is " + key + ". Remember it. " + key + " is the pass key. "; },
          "What is the pass key? The pass key is "};
}

}  // namespace

TokenDataset make_passkey_dataset(const PasskeyOptions& o) {
  const Phrasing say = phrasing(o.style);
  check(o.key_digits >= 1 && o.key_digits <= 9, "passkey: --key-digits must be 1 to 9");
  const int64_t fixed = static_cast<int64_t>(say.needle(std::string(o.key_digits, '0')).size() + say.question.size()) + o.key_digits + 1;
  check(o.docs > 0, "passkey: --docs must be positive");
  check(o.min_len >= fixed + 16, "passkey: --min-len must be at least " + std::to_string(fixed + 16) +
                                     " bytes to hold the key, the question and some filler");
  check(o.max_len >= o.min_len, "passkey: --max-len must be at least --min-len");

  std::mt19937_64 rng(o.seed);
  TokenDataset data;
  data.task = "passkey";
  for (int64_t d = 0; d < o.docs; ++d) {
    const int lowest = static_cast<int>(std::pow(10, o.key_digits - 1));
    const std::string key = std::to_string(std::uniform_int_distribution<int>(lowest, 10 * lowest - 1)(rng));
    const int64_t filler_bytes = document_length(rng, o.min_len, o.max_len, 2) - fixed;
    const double depth = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
    const std::string text = filler_text(rng, filler_bytes);
    const auto cut = static_cast<size_t>(depth * static_cast<double>(text.size()));
    const std::string before = text.substr(0, cut) + say.needle(key) + text.substr(cut) + say.question;
    const auto evidence = static_cast<int64_t>(cut) + 1;  // after BOS

    std::vector<int32_t> doc = {tokenizer::kBos};
    for (int32_t t : tokenizer::encode(before)) doc.push_back(t);
    const int64_t answer_start = static_cast<int64_t>(doc.size());
    for (int32_t t : tokenizer::encode(key + ".")) doc.push_back(t);
    doc.push_back(tokenizer::kEos);
    data.add_document(doc, {{answer_start, static_cast<int64_t>(key.size()), evidence}});
  }
  return data;
}

}  // namespace loom
